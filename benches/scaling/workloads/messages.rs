//! `messages`: network-style traffic between threads. The threads form a
//! ring; each sends packets (`Vec<u8>` of 32–1500 B: 60% up to 128 B, 30% up
//! to 512 B, 10% up to 1500 B) to the next thread, keeping a window of 32 in
//! flight, and receives, checks and drops the packets of the previous one.
//! Every packet is allocated by one thread and freed by another (with one
//! thread, by itself).

use super::{join_all, share, Rng, Spec};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Messages in a full-size run, split among the threads.
const MESSAGES: usize = 4_000_000;
/// Messages each thread keeps in flight.
const WINDOW: usize = 32;
/// Bytes of header: sender, sequence number, length, fill byte (u32 each).
const HEADER: usize = 16;

fn packet(rng: &mut Rng, sender: usize, seq: usize) -> Vec<u8> {
    let len = match rng.below(10) {
        0..=5 => rng.range(32, 128),
        6..=8 => rng.range(129, 512),
        _ => rng.range(513, 1500),
    };
    let fill = (seq as u8).wrapping_mul(7) | 1;
    let mut m = Vec::with_capacity(len);
    for field in [sender as u32, seq as u32, len as u32, u32::from(fill)] {
        m.extend_from_slice(&field.to_le_bytes());
    }
    m.resize(len, fill);
    m
}

fn check(m: &[u8], sender: usize, seq: usize) -> Result<(), String> {
    let field = |i: usize| u32::from_le_bytes(m[4 * i..4 * i + 4].try_into().unwrap());
    let fill = field(3) as u8;
    let ok = m.len() >= HEADER
        && field(0) as usize == sender
        && field(1) as usize == seq
        && field(2) as usize == m.len()
        && m[HEADER] == fill
        && m[m.len() / 2] == fill
        && m[m.len() - 1] == fill;
    if ok {
        Ok(())
    } else {
        Err(format!("messages: packet {seq} from {sender} corrupted"))
    }
}

fn node(
    me: usize,
    prev: usize,
    n: usize,
    n_prev: usize,
    tx: SyncSender<Vec<u8>>,
    rx: Receiver<Vec<u8>>,
) -> Result<u64, String> {
    let mut rng = Rng::new(me as u64 + 31);
    let mut sent = 0;
    let gone = |_| format!("messages: thread {me}'s neighbour is gone");
    while sent < n.min(WINDOW) {
        tx.send(packet(&mut rng, me, sent)).map_err(gone)?;
        sent += 1;
    }
    for seq in 0..n_prev {
        let m = rx
            .recv()
            .map_err(|_| format!("messages: thread {me}: ring broken"))?;
        check(&m, prev, seq)?;
        drop(m);
        if sent < n {
            tx.send(packet(&mut rng, me, sent)).map_err(gone)?;
            sent += 1;
        }
    }
    // A thread that receives fewer than it sends finishes its sends here.
    while sent < n {
        tx.send(packet(&mut rng, me, sent)).map_err(gone)?;
        sent += 1;
    }
    Ok(n as u64)
}

pub fn run(spec: &Spec) -> Result<u64, String> {
    let t = spec.threads;
    let total = spec.n(MESSAGES, t);
    // Messages in flight never exceed t * WINDOW (each thread sends only
    // after a receive, beyond its first window), so sends never block for good.
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..t).map(|_| sync_channel(t * WINDOW)).unzip();
    let mut txs: Vec<Option<SyncSender<Vec<u8>>>> = txs.into_iter().map(Some).collect();
    let handles: Vec<_> = rxs
        .into_iter()
        .enumerate()
        .map(|(me, rx)| {
            let next = (me + 1) % t;
            let prev = (me + t - 1) % t;
            let tx = txs[next].take().expect("each sender handed out once");
            let n = share(total, t, me);
            let n_prev = share(total, t, prev);
            std::thread::spawn(move || node(me, prev, n, n_prev, tx, rx))
        })
        .collect();
    Ok(join_all(handles)?.iter().sum())
}
