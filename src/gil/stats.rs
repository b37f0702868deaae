//! A snapshot of the baseline allocator's counters.

/// Counters of the process-wide [`GilAlloc`](super::GilAlloc) heap, read under
/// the global lock by [`GilAlloc::stats`](super::GilAlloc::stats) (all O(1): they are maintained
/// incrementally, so taking a snapshot costs one lock round-trip).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GilStats {
    /// Arenas (1 MiB each) currently mapped from the OS.
    pub arenas_mapped: usize,
    /// Most arenas mapped at the same time.
    pub arenas_high_water: usize,
    /// Arenas mapped since start-up (each successful `mmap` of an arena).
    pub arenas_mapped_total: usize,
    /// Pools (16 KiB) currently assigned to a size class.
    pub pools_in_use: usize,
    /// Pools of mapped arenas that hold no blocks, carved or not.
    pub pools_free: usize,
    /// Small blocks (≤ 512 B, align ≤ 16) handed out and not yet freed.
    pub small_blocks: usize,
    /// Allocations forwarded to the system allocator and not yet freed.
    pub system_blocks: usize,
    /// Capacity of the arena table: the most arenas that can be mapped at once.
    pub arena_limit: usize,
}
