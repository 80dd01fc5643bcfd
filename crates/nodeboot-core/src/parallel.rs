//! Order-keeping parallel map over the machine's cores, for the CPU-bound steps of a rebuild
//! (parsing manifests, rendering nodes). Scoped threads, no pool: a rebuild is rare and long
//! enough that starting a thread per core costs nothing next to it.

/// Maps `items` with `f` on up to one thread per core, in chunks of at least `min_chunk`;
/// the results keep the order of `items`. A panic in `f` is propagated.
pub fn map_in_order<T, R, F>(items: Vec<T>, min_chunk: usize, f: F) -> Vec<R>
where
    T: Send,
    R: Send,
    F: Fn(T) -> R + Sync,
{
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let min_chunk = min_chunk.max(1);
    if threads == 1 || items.len() < 2 * min_chunk {
        return items.into_iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads).max(min_chunk);
    let mut chunks: Vec<Vec<T>> = Vec::new();
    let mut rest = items;
    while rest.len() > chunk {
        let tail = rest.split_off(chunk);
        chunks.push(rest);
        rest = tail;
    }
    chunks.push(rest);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|c| scope.spawn(move || c.into_iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_order() {
        let items: Vec<u32> = (0..10_000).collect();
        let out = super::map_in_order(items.clone(), 100, |x| x * 2);
        assert_eq!(out, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        assert_eq!(super::map_in_order(vec![1], 100, |x: i32| x + 1), vec![2]);
    }
}
