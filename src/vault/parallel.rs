//! Work on many items at once, on scoped threads: reading and writing entries (a round trip
//! each), sealing and opening them (an X25519 each).

/// How many threads CPU-bound work uses: one per core (asked once: the answer reads cgroup
/// files).
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(2, usize::from))
}

/// `each` of `items` on at most `threads` threads, each taking a run of them; the outcomes in
/// the order of `items`. An item whose thread panicked gets `None`.
pub fn on_threads<I: Sync, T: Send>(
    items: &[I],
    threads: usize,
    each: impl Fn(&I) -> T + Sync,
) -> Vec<Option<T>> {
    let chunk = items.len().div_ceil(threads.max(1)).max(1);
    if items.len() <= chunk {
        // One run: no thread to start for it (a one-profile save seals one entry).
        let all = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            items.iter().map(&each).collect::<Vec<_>>()
        }));
        return match all {
            Ok(done) => done.into_iter().map(Some).collect(),
            Err(_) => items.iter().map(|_| None).collect(),
        };
    }
    let each = &each;
    std::thread::scope(|scope| {
        let parts: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(each).collect::<Vec<_>>()))
            .collect();
        parts
            .into_iter()
            .zip(items.chunks(chunk))
            .flat_map(|(part, items)| match part.join() {
                Ok(done) => done.into_iter().map(Some).collect::<Vec<_>>(),
                Err(_) => items.iter().map(|_| None).collect(),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_keep_the_order_of_the_items_and_a_panic_costs_only_its_run() {
        let items: Vec<u32> = (0..100).collect();
        let doubled = on_threads(&items, 7, |n| n * 2);
        assert_eq!(
            doubled,
            items.iter().map(|n| Some(n * 2)).collect::<Vec<_>>()
        );
        assert!(on_threads(&Vec::<u32>::new(), 4, |n| *n).is_empty());
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let some = on_threads(&items, 4, |n| {
            assert!(*n != 30, "a failing item");
            *n
        });
        std::panic::set_hook(hook);
        assert_eq!(
            some.iter().filter(|o| o.is_none()).count(),
            25,
            "one run of 25"
        );
        assert_eq!(some[0], Some(0));
        assert_eq!(some[99], Some(99));
    }
}
