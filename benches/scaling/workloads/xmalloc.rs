//! `xmalloc`: producer/consumer, 100% remote frees. Producers allocate
//! batches of 4096 objects of 64 B, tag each, and send the batch through a
//! bounded channel to a consumer thread, which checks and frees every
//! object. The hardest case for thread caches: producers only allocate,
//! consumers only free, so memory must flow back from consumers to
//! producers through the shared level.
//!
//! `threads` = producers + consumers: `ceil(t/2)` producers and `floor(t/2)`
//! consumers. With one thread it alternates: produce a batch, consume it
//! (no remote frees then).

use super::{join_all, share, Raw, Spec};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Objects in a full-size run.
const OBJECTS: usize = 8_000_000;
/// Objects per batch.
const BATCH: usize = 4096;
/// Object size.
const SIZE: usize = 64;
/// Batches in flight per consumer (bounds the memory the run may hold).
const QUEUE: usize = 4;

fn tag(producer: usize, batch: usize, i: usize) -> u64 {
    ((producer as u64) << 48) ^ ((batch as u64) << 13) ^ i as u64 ^ 0x5A5A_0000_0000_0000
}

fn produce(producer: usize, batch: usize) -> Vec<Raw> {
    (0..BATCH)
        .map(|i| {
            let mut b = Raw::new(SIZE, 8);
            b.tag(tag(producer, batch, i));
            b
        })
        .collect()
}

fn consume(batch: Vec<Raw>, producer: usize, index: usize) -> Result<u64, String> {
    for (i, b) in batch.iter().enumerate() {
        b.check_tag(tag(producer, index, i))?;
    }
    let n = batch.len() as u64;
    drop(batch);
    Ok(n)
}

pub fn run(spec: &Spec) -> Result<u64, String> {
    let batches = spec.n(OBJECTS, BATCH) / BATCH;
    if spec.threads == 1 {
        let mut n = 0;
        for k in 0..batches {
            n += consume(produce(0, k), 0, k)?;
        }
        return Ok(n);
    }
    let producers = spec.threads.div_ceil(2);
    let consumers = spec.threads / 2;
    type Msg = (usize, usize, Vec<Raw>);
    let (senders, receivers): (Vec<SyncSender<Msg>>, Vec<Receiver<Msg>>) =
        (0..consumers).map(|_| sync_channel(QUEUE)).unzip();
    let consumer_handles: Vec<_> = receivers
        .into_iter()
        .map(|rx| {
            std::thread::spawn(move || {
                let mut n = 0;
                for (p, k, batch) in rx {
                    n += consume(batch, p, k)?;
                }
                Ok(n)
            })
        })
        .collect();
    let producer_handles: Vec<_> = (0..producers)
        .map(|p| {
            let senders = senders.clone();
            let mine = share(batches, producers, p);
            std::thread::spawn(move || {
                for k in 0..mine {
                    let batch = produce(p, k);
                    senders[(p + k) % senders.len()]
                        .send((p, k, batch))
                        .map_err(|_| "xmalloc: consumer gone".to_string())?;
                }
                Ok(0u64)
            })
        })
        .collect();
    drop(senders);
    join_all(producer_handles)?;
    let consumed: u64 = join_all(consumer_handles)?.iter().sum();
    if consumed != (batches * BATCH) as u64 {
        return Err(format!(
            "xmalloc: consumed {consumed} of {} objects",
            batches * BATCH
        ));
    }
    Ok(consumed)
}
