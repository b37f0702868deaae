//! `messages`: the scaling benchmark's network-style traffic. The threads
//! form a ring; each sends packets (`Vec<u8>` of 32–1500 B: 60% up to 128 B,
//! 30% up to 512 B, 10% up to 1500 B) to the next thread, keeping a window
//! of 32 in flight, and receives, checks and gives back the packets of the
//! previous one. So every packet is taken by one thread and given back by
//! another (with one thread, by itself). A packet travels as its handle: a
//! guard borrowed from the cell's one pool (the threads are scoped), a key
//! for `sharded-slab`, the `Vec` itself for `plain`.

use super::{join_sum, share, Rng, Spec};
use crate::variants::{Kind, Source};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// What the workload does and counts.
pub const ABOUT: &str = "threads in a ring pass 32-1500 B Vec<u8> packets to the next thread (window 32), which checks and gives them back (ops = messages)";

/// Messages in a default-size run, split among the threads.
const MESSAGES: usize = 2_000_000;
/// Messages each thread keeps in flight.
const WINDOW: usize = 32;
/// Bytes of header: sender, sequence number, length, fill byte (u32 each).
const HEADER: usize = 16;

fn packet<'a, S: Source<Vec<u8>>>(
    src: &'a S,
    rng: &mut Rng,
    sender: usize,
    seq: usize,
) -> S::Handle<'a> {
    let len = match rng.below(10) {
        0..=5 => rng.range(32, 128),
        6..=8 => rng.range(129, 512),
        _ => rng.range(513, 1500),
    };
    let fill = (seq as u8).wrapping_mul(7) | 1;
    src.fill(|m| {
        m.reserve(len);
        for field in [sender as u32, seq as u32, len as u32, u32::from(fill)] {
            m.extend_from_slice(&field.to_le_bytes());
        }
        m.resize(len, fill);
    })
}

fn check(m: &[u8], sender: usize, seq: usize) -> Result<(), String> {
    let field = |i: usize| u32::from_le_bytes(m[4 * i..4 * i + 4].try_into().unwrap());
    let ok = m.len() > HEADER && {
        let fill = field(3) as u8;
        field(0) as usize == sender
            && field(1) as usize == seq
            && field(2) as usize == m.len()
            && m[HEADER] == fill
            && m[m.len() / 2] == fill
            && m[m.len() - 1] == fill
    };
    if ok {
        Ok(())
    } else {
        Err(format!("messages: packet {seq} from {sender} corrupted"))
    }
}

/// One thread of the ring: sends `n` packets, receives `n_prev` from `prev`.
fn node<'a, S: Source<Vec<u8>>>(
    src: &'a S,
    (me, prev): (usize, usize),
    (n, n_prev): (usize, usize),
    tx: SyncSender<S::Handle<'a>>,
    rx: Receiver<S::Handle<'a>>,
) -> Result<u64, String> {
    let mut rng = Rng::new(me as u64 + 31);
    let mut sent = 0;
    let gone = |_| format!("messages: thread {me}'s neighbour is gone");
    while sent < n.min(WINDOW) {
        tx.send(packet(src, &mut rng, me, sent)).map_err(gone)?;
        sent += 1;
    }
    for seq in 0..n_prev {
        let m = rx
            .recv()
            .map_err(|_| format!("messages: thread {me}: ring broken"))?;
        src.read(&m, |m| check(m, prev, seq))?;
        src.free(m);
        if sent < n {
            tx.send(packet(src, &mut rng, me, sent)).map_err(gone)?;
            sent += 1;
        }
    }
    // A thread that receives fewer than it sends finishes its sends here.
    while sent < n {
        tx.send(packet(src, &mut rng, me, sent)).map_err(gone)?;
        sent += 1;
    }
    Ok(n as u64)
}

pub fn run<K: Kind>(spec: &Spec) -> Result<u64, String> {
    let t = spec.threads;
    let total = spec.n(MESSAGES, t);
    // In flight: at most t * WINDOW packets, plus one being built per thread.
    let src = K::new::<Vec<u8>>(t * (WINDOW + 1));
    std::thread::scope(|s| {
        // Sends never block for good: each thread sends only after a
        // receive, beyond its first window.
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..t).map(|_| sync_channel(t * WINDOW)).unzip();
        let mut txs: Vec<Option<SyncSender<_>>> = txs.into_iter().map(Some).collect();
        let src = &src;
        let handles: Vec<_> = rxs
            .into_iter()
            .enumerate()
            .map(|(me, rx)| {
                let prev = (me + t - 1) % t;
                let tx = txs[(me + 1) % t]
                    .take()
                    .expect("each sender handed out once");
                let counts = (share(total, t, me), share(total, t, prev));
                s.spawn(move || node(src, (me, prev), counts, tx, rx))
            })
            .collect();
        join_sum(handles)
    })
}
