//! `numeric`: the scaling benchmark's boxed arithmetic (a dynamic
//! language's numbers, every intermediate result a new object). Each thread
//! keeps 512 integers, floats and complex numbers and updates them with
//! expressions whose every step makes a new object and gives back the ones
//! it replaces; the same computation on unboxed numbers runs alongside and
//! the results must agree bit for bit. `plain` makes a `Box`; a pool
//! overwrites one of its cached objects (`put`). The three pools, one per
//! type, are shared by all threads.

use super::{on_threads, share, Spec};
use crate::variants::{Item, Kind, Source};
use std::hint::black_box;

/// What the workload does and counts.
pub const ABOUT: &str = "boxed u64/f64/(f64, f64) arithmetic, every intermediate a new object, checked bit for bit against unboxed numbers (ops = objects made)";

/// Objects made in a default-size run, split among the threads.
const OBJECTS: usize = 6_000_000;
/// Live numbers of each kind per thread.
const LIVE: usize = 512;
/// Objects made per element per sweep (3 int + 3 float + 2 complex).
const PER_ELEMENT: usize = 8;
/// Temporaries of one type alive at once per thread, besides the live set.
const TEMPORARIES: usize = 2;

const MODULUS: u64 = 1_000_000_007;

type Complex = (f64, f64);

fn int_step(a: u64, b: u64) -> u64 {
    (a * 3 + b) % MODULUS
}

fn float_step(a: f64, b: f64) -> f64 {
    (a * 0.5 + b).sqrt() + 0.25
}

fn complex_step(z: Complex, c: Complex) -> Complex {
    let sq = (z.0 * z.0 - z.1 * z.1, 2.0 * z.0 * z.1);
    (sq.0 * 0.25 + c.0, sq.1 * 0.25 + c.1)
}

/// The number in `h`.
#[inline(always)]
fn val<T: Item + Copy, S: Source<T>>(s: &S, h: &S::Handle<'_>) -> T {
    s.read(h, |v| *v)
}

/// A new object holding `v`, behind `black_box` so that the optimiser can
/// neither elide nor reuse it: making an object for every result *is* the
/// workload.
#[inline(always)]
fn make<T: Item, S: Source<T>>(s: &S, v: T) -> S::Handle<'_> {
    black_box(s.put(v))
}

/// Puts `new` in `slot` and gives back the object it replaces.
#[inline(always)]
fn replace<'a, T: Item, S: Source<T>>(s: &'a S, slot: &mut S::Handle<'a>, new: S::Handle<'a>) {
    s.free(std::mem::replace(slot, new));
}

fn worker<I, F, C>(ints: &I, floats: &F, cplx: &C, t: usize, objects: usize) -> Result<u64, String>
where
    I: Source<u64>,
    F: Source<f64>,
    C: Source<Complex>,
{
    let mut iv: Vec<_> = (0..LIVE).map(|i| ints.put((i * 7 + t) as u64)).collect();
    let mut fv: Vec<_> = (0..LIVE).map(|i| floats.put(i as f64 / 3.0)).collect();
    let mut cv: Vec<_> = (0..LIVE)
        .map(|i| cplx.put((i as f64 / LIVE as f64, 0.5)))
        .collect();
    let mut ints_ref: Vec<u64> = iv.iter().map(|h| val(ints, h)).collect();
    let mut floats_ref: Vec<f64> = fv.iter().map(|h| val(floats, h)).collect();
    let mut cplx_ref: Vec<Complex> = cv.iter().map(|h| val(cplx, h)).collect();
    let c0 = (-0.4, 0.3);
    let sweeps = (objects / (LIVE * PER_ELEMENT)).max(1);
    for _ in 0..sweeps {
        for i in 0..LIVE {
            let next = (i + 1) % LIVE;
            // Integers: t1 = a * 3; t2 = t1 + b; a = t2 % M — three objects.
            let t1 = make(ints, val(ints, &iv[i]) * 3);
            let t2 = make(ints, val(ints, &t1) + val(ints, &iv[next]));
            let a = make(ints, val(ints, &t2) % MODULUS);
            replace(ints, &mut iv[i], a);
            ints.free(t2);
            ints.free(t1);
            ints_ref[i] = int_step(ints_ref[i], ints_ref[next]);
            // Floats: t1 = a * 0.5; t2 = t1 + b; a = sqrt(t2) + 0.25.
            let f1 = make(floats, val(floats, &fv[i]) * 0.5);
            let f2 = make(floats, val(floats, &f1) + val(floats, &fv[next]));
            let a = make(floats, val(floats, &f2).sqrt() + 0.25);
            replace(floats, &mut fv[i], a);
            floats.free(f2);
            floats.free(f1);
            floats_ref[i] = float_step(floats_ref[i], floats_ref[next]);
            // Complex: sq = z * z; z = sq * 0.25 + c.
            let z = val(cplx, &cv[i]);
            let sq = make(cplx, (z.0 * z.0 - z.1 * z.1, 2.0 * z.0 * z.1));
            let s = val(cplx, &sq);
            let a = make(cplx, (s.0 * 0.25 + c0.0, s.1 * 0.25 + c0.1));
            replace(cplx, &mut cv[i], a);
            cplx.free(sq);
            cplx_ref[i] = complex_step(cplx_ref[i], c0);
        }
    }
    for i in 0..LIVE {
        let (z, r) = (val(cplx, &cv[i]), cplx_ref[i]);
        let same_complex = z.0.to_bits() == r.0.to_bits() && z.1.to_bits() == r.1.to_bits();
        if val(ints, &iv[i]) != ints_ref[i]
            || val(floats, &fv[i]).to_bits() != floats_ref[i].to_bits()
            || !same_complex
        {
            return Err(format!(
                "numeric: thread {t}, element {i} differs from the unboxed computation"
            ));
        }
    }
    iv.into_iter().for_each(|h| ints.free(h));
    fv.into_iter().for_each(|h| floats.free(h));
    cv.into_iter().for_each(|h| cplx.free(h));
    Ok((sweeps * LIVE * PER_ELEMENT) as u64)
}

pub fn run<K: Kind>(spec: &Spec) -> Result<u64, String> {
    let total = spec.n(OBJECTS, LIVE * PER_ELEMENT);
    let live = spec.threads * (LIVE + TEMPORARIES);
    let ints = K::new::<u64>(live);
    let floats = K::new::<f64>(live);
    let cplx = K::new::<Complex>(live);
    on_threads(spec.threads, |t| {
        worker(&ints, &floats, &cplx, t, share(total, spec.threads, t))
    })
}
