//! Login challenges, announce signatures and announcements. A challenge is taken with `remove`
//! and a signature recorded with a compare-and-swap, so each proof is good exactly once; an
//! announcement and the device's "current" pointer change in one transaction.

use sled::Transactional;

use super::DeviceStore;
use super::StoreResult;
use super::codec::{decode, encode};
use super::records::{AnnouncementRecord, ChallengeRecord};
use super::sled_store::{SledStore, abort, backend, tx_error};

impl DeviceStore for SledStore {
    fn put_challenge(&self, challenge: &str, rec: &ChallengeRecord) -> StoreResult<()> {
        Self::put_in(&self.challenges, "challenges", challenge.as_bytes(), rec)
    }

    fn take_challenge(&self, challenge: &str) -> StoreResult<Option<ChallengeRecord>> {
        Self::take_from(&self.challenges, "challenges", challenge.as_bytes())
    }

    fn remember_signature(&self, digest: &[u8], until: i64) -> StoreResult<bool> {
        let fresh = self
            .signatures
            .compare_and_swap(
                digest,
                None as Option<&[u8]>,
                Some(&until.to_be_bytes()[..]),
            )
            .map_err(backend)?;
        Ok(fresh.is_ok())
    }

    fn open_announcement(
        &self,
        rec: &AnnouncementRecord,
    ) -> StoreResult<Option<AnnouncementRecord>> {
        (&self.announcements, &self.current)
            .transaction(|(anns, current)| {
                let previous = match current.get(rec.device.as_bytes())? {
                    Some(prev_id) => match anns.get(&prev_id)? {
                        Some(v) => {
                            let mut prev: AnnouncementRecord =
                                decode("announcements", &v).map_err(abort)?;
                            let unchanged = prev.clone();
                            prev.ended_at.get_or_insert(rec.created_at);
                            anns.insert(
                                prev.id.as_bytes(),
                                encode("announcements", &prev).map_err(abort)?,
                            )?;
                            Some(unchanged)
                        }
                        None => None,
                    },
                    None => None,
                };
                anns.insert(
                    rec.id.as_bytes(),
                    encode("announcements", rec).map_err(abort)?,
                )?;
                current.insert(rec.device.as_bytes(), rec.id.as_bytes())?;
                Ok(previous)
            })
            .map_err(tx_error)
    }

    fn announcement(&self, id: &str) -> StoreResult<Option<AnnouncementRecord>> {
        Self::get(&self.announcements, "announcements", id.as_bytes())
    }

    fn end_announcement(
        &self,
        device: &str,
        id: &str,
        now: i64,
    ) -> StoreResult<Option<AnnouncementRecord>> {
        (&self.announcements, &self.current)
            .transaction(|(anns, current)| {
                if current.get(device.as_bytes())?.as_deref() != Some(id.as_bytes()) {
                    return Ok(None);
                }
                current.remove(device.as_bytes())?;
                let Some(v) = anns.get(id.as_bytes())? else {
                    return Ok(None);
                };
                let mut ann: AnnouncementRecord = decode("announcements", &v).map_err(abort)?;
                ann.ended_at.get_or_insert(now);
                anns.insert(id.as_bytes(), encode("announcements", &ann).map_err(abort)?)?;
                Ok(Some(ann))
            })
            .map_err(tx_error)
    }
}
