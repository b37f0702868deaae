//! Gathering the statistics ([`crate::stats::Stats`]): a read-only walk of
//! the process-wide heap, plus the slow-path counters.
//!
//! Nothing here runs on an allocation path, and nothing here writes shared
//! state: the walk reads each segment's unit maps and descriptors once (see
//! [`segment::census`]) and each class pool's words once, so a snapshot
//! taken while other threads allocate is a racy one, exact when they are
//! quiet. It allocates nothing, so the exit report may call it.
//!
//! What it covers: every segment (so the pages of `Shoal`, its ablations and
//! `ShoalSecure` alike, and every medium object), every huge object, and the
//! class pools of `Shoal` and of `ShoalSecure` (`small_path::pools()`,
//! `small_path::secure_pools()`), summed per class. `ShoalLocked`'s locked
//! lists (an ablation) are not reached: its free blocks count as in use.

use super::segment::{self, page_capacity, SpanView, UNIT};
use super::size_class::{CLASS_SIZE, NUM_CLASSES};
use super::{large, small_path};
use crate::stats::Stats;

/// A snapshot of the whole heap.
pub fn gather() -> Stats {
    let mut stats = Stats::default();
    for (class, c) in stats.classes.iter_mut().enumerate() {
        c.block_size = CLASS_SIZE[class] as usize;
    }
    let mut units_used = 0u64;
    let mut units_dirty = 0u64;
    let mut units_small = 0u64;
    let mut units_medium = 0u64;
    segment::census(
        |view| {
            units_used += u64::from(view.used.count_ones());
            units_dirty += u64::from(view.dirty_free.count_ones());
        },
        |span| match span {
            SpanView::Page { class, at_home } => {
                let c = &mut stats.classes[class];
                c.pages += 1;
                c.free_in_pages += u64::from(at_home);
                units_small += u64::from(segment::page_units(class));
            }
            SpanView::Medium { units } => {
                stats.medium_count += 1;
                units_medium += u64::from(units);
            }
        },
    );
    for (class, c) in stats.classes.iter_mut().enumerate() {
        let capacity = u64::from(page_capacity(class));
        let snapshots = [
            small_path::pools().class(class).snapshot(),
            small_path::secure_pools().class(class).snapshot(),
        ];
        for p in snapshots {
            c.free_in_pool += p.stacked;
            c.uncarved += p
                .carving
                .map_or(0, |(_, carved)| capacity.saturating_sub(u64::from(carved)));
            c.refills += p.refills;
            c.flushes += p.flushes;
            c.cas_retries += p.cas_retries;
        }
        let free = c.free_in_pages + c.free_in_pool + c.uncarved;
        c.in_use = (c.pages * capacity).saturating_sub(free);
        stats.small_in_use_bytes += c.in_use * c.block_size as u64;
        stats.small_free_bytes += free * c.block_size as u64;
        stats.refills += c.refills;
        stats.flushes += c.flushes;
        stats.cas_retries += c.cas_retries;
        stats.pages += c.pages;
    }
    let unit = UNIT as u64;
    let segments = segment::segments_mapped();
    let units_total = segments * (segment::SEGMENT_SIZE / UNIT) as u64;
    stats.segments = segments;
    stats.small_page_bytes = units_small * unit;
    stats.medium_bytes = units_medium * unit;
    stats.free_resident_bytes = units_dirty * unit;
    // Free units that are not dirty: purged, or never touched since mapped.
    let usable = segments * u64::from(segment::usable_units());
    stats.free_purged_bytes = usable.saturating_sub(units_used + units_dirty) * unit;
    let (huge_count, huge_bytes) = large::huge_counts();
    stats.huge_count = huge_count as u64;
    stats.huge_bytes = huge_bytes as u64;
    stats.parked_bytes = segment::parked_bytes() as u64;
    let (purges, purged) = segment::purge_counts();
    stats.purges = purges;
    stats.purged_bytes = purged;
    stats.mapped_bytes = units_total * unit + stats.huge_bytes + stats.parked_bytes;
    // Resident: every unit held by a span or free but dirty, one unit of
    // each segment's header, the huge and parked mappings whole. The state
    // table (touched only by `ShoalSecure`) and untouched parts of pages and
    // mappings are not measured: an upper estimate for `Shoal`, a lower one
    // for `ShoalSecure`.
    stats.resident_estimate_bytes =
        (units_used + units_dirty + segments) * unit + stats.huge_bytes + stats.parked_bytes;
    stats.in_use_bytes = stats.small_in_use_bytes + stats.medium_bytes + stats.huge_bytes;
    stats.free_bytes = stats.small_free_bytes
        + stats.free_resident_bytes
        + stats.free_purged_bytes
        + stats.parked_bytes;
    stats
}

const _: () = assert!(NUM_CLASSES == crate::stats::SIZE_CLASSES);
