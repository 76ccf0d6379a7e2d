//! Task ids: sortable by creation time, unique across processes.

use std::sync::Mutex;

use jdos_types::UnixMillis;

static LAST: Mutex<(UnixMillis, u32)> = Mutex::new((0, 0));

/// A new task id `<13-digit millis>-<4-digit sequence>-<8 hex random>`.
///
/// Ids of one process sort in creation order (the sequence orders ids of
/// one millisecond, and the time never goes back within a process); ids of
/// different processes sort by their millisecond. The random part makes
/// ids of different processes unique.
pub fn new_task_id(now_ms: UnixMillis) -> String {
    let (ms, seq) = {
        let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
        let ms = now_ms.max(last.0);
        let seq = if ms == last.0 { last.1 + 1 } else { 0 };
        // 10,000 ids in one millisecond: borrow the next millisecond.
        let (ms, seq) = if seq > 9_999 { (ms + 1, 0) } else { (ms, seq) };
        *last = (ms, seq);
        (ms, seq)
    };
    let mut rnd = [0u8; 4];
    // Without OS randomness the sequence still keeps ids of this process
    // unique; fall back to the address of a local for some entropy.
    if getrandom::fill(&mut rnd).is_err() {
        let x = &rnd as *const _ as usize as u32 ^ std::process::id();
        rnd = x.to_le_bytes();
    }
    format!("{ms:013}-{seq:04}-{:08x}", u32::from_le_bytes(rnd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_in_creation_order_and_are_unique() {
        let mut ids = Vec::new();
        for i in 0..20_000u64 {
            // The clock stalls and even goes back: order holds.
            ids.push(new_task_id(1_700_000_000_000 + i / 5_000 - (i % 7)));
        }
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len());
        assert_eq!(ids[0].len(), 13 + 1 + 4 + 1 + 8);
    }
}
