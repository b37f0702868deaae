//! Hand-written SVG figures (no plotting dependency): throughput against
//! threads per workload, and peak and final RSS per allocator. Both use a log-scale y
//! axis, because the allocators differ by orders of magnitude and ratios are
//! what hold across machines.

use std::fmt::Write as _;

/// One allocator's line: per thread count, (median, min, max) or nothing.
pub struct Series<'a> {
    pub name: &'a str,
    pub points: Vec<Option<(f64, f64, f64)>>,
}

/// Colour and dash pattern of each allocator (ablations dashed).
fn style(name: &str) -> (&'static str, &'static str) {
    match name {
        "shoal" => ("#1f77b4", ""),
        "gil" => ("#d62728", ""),
        "shoal-nocache" => ("#17becf", "6,3"),
        "shoal-locked" => ("#9467bd", "6,3"),
        "system" => ("#7f7f7f", ""),
        "mimalloc" => ("#2ca02c", ""),
        "jemalloc" => ("#ff7f0e", ""),
        _ => ("#000000", "2,2"),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Log-scale axis over `[lo, hi]` (positive), padded to whole
/// 1-2-5 ticks.
struct LogAxis {
    lo: f64,
    hi: f64,
}

impl LogAxis {
    fn new(values: impl Iterator<Item = f64>) -> Self {
        let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
        for v in values.filter(|v| *v > 0.0 && v.is_finite()) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if !lo.is_finite() {
            return Self { lo: 0.1, hi: 10.0 };
        }
        // Snap outwards to 1-2-5 steps, so the data fills the plot.
        let steps = |decade: f64| [decade, 2.0 * decade, 5.0 * decade, 10.0 * decade];
        let d_lo = 10f64.powf(lo.log10().floor());
        let lo = steps(d_lo)
            .into_iter()
            .rev()
            .find(|&v| v <= lo * 0.95)
            .unwrap_or(d_lo / 2.0);
        let d_hi = 10f64.powf(hi.log10().floor());
        let hi = steps(d_hi)
            .into_iter()
            .find(|&v| v >= hi * 1.05)
            .unwrap_or(20.0 * d_hi);
        Self { lo, hi }
    }

    /// 0 at `lo`, 1 at `hi`.
    fn frac(&self, v: f64) -> f64 {
        (v.max(self.lo).log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
    }

    fn ticks(&self) -> Vec<(f64, bool)> {
        let mut out = Vec::new();
        let mut decade = 10f64.powf(self.lo.log10().floor());
        while decade <= self.hi * 1.0001 {
            for (m, major) in [(1.0, true), (2.0, false), (5.0, false)] {
                let v = decade * m;
                if v >= self.lo * 0.9999 && v <= self.hi * 1.0001 {
                    out.push((v, major));
                }
            }
            decade *= 10.0;
        }
        out
    }
}

/// A tick label: whole numbers from 1 up, else just the digits a 1-2-5
/// tick needs (0.2, 0.05, 0.0005).
fn num(v: f64) -> String {
    if v >= 1.0 {
        format!("{}", v.round())
    } else {
        let decimals = (-v.log10().floor()).clamp(0.0, 12.0) as usize;
        format!("{v:.decimals$}")
    }
}

/// Three significant digits, for values of any size.
fn sig3(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let decimals = (2.0 - v.abs().log10().floor()).clamp(0.0, 12.0) as usize;
    format!("{v:.decimals$}")
}

/// Throughput (M ops/s, log scale) against thread count, one line per
/// allocator with min–max whiskers; thread counts above `cores` shaded.
pub fn throughput(
    workload: &str,
    threads: &[usize],
    series: &[Series],
    cores: usize,
    reps: usize,
) -> String {
    let (w, h) = (720.0, 420.0);
    let (left, right, top, bottom) = (70.0, 160.0, 40.0, 50.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let axis = LogAxis::new(
        series
            .iter()
            .flat_map(|s| s.points.iter().flatten().flat_map(|p| [p.1, p.2])),
    );
    let n = threads.len().max(1);
    let x = |i: usize| left + pw * (i as f64 + 0.5) / n as f64;
    let y = |v: f64| top + ph * (1.0 - axis.frac(v));
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{} — throughput (M ops/s, log scale), median of {reps}, whiskers min–max</text>"#,
        left + pw / 2.0,
        esc(workload)
    );
    // Oversubscribed region.
    if let Some(first) = threads.iter().position(|&t| t > cores) {
        let x0 = left + pw * first as f64 / n as f64;
        let _ = writeln!(
            s,
            r##"<rect x="{x0}" y="{top}" width="{}" height="{ph}" fill="#f2f2f2"/><text x="{}" y="{}" text-anchor="end" fill="#888">threads &gt; {cores} cores</text>"##,
            left + pw - x0,
            left + pw - 4.0,
            top + 14.0
        );
    }
    for (v, major) in axis.ticks() {
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="{}"/>"##,
            left + pw,
            if major { "#ccc" } else { "#eee" }
        );
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{:.1}" text-anchor="end" fill="#444">{}</text>"##,
            left - 6.0,
            yy + 4.0,
            num(v)
        );
    }
    for (i, t) in threads.iter().enumerate() {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{t}</text>"#,
            x(i),
            top + ph + 18.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">threads</text>"#,
        left + pw / 2.0,
        h - 10.0
    );
    let _ = writeln!(
        s,
        r#"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    for (k, ser) in series.iter().enumerate() {
        let (color, dash) = style(ser.name);
        let dash_attr = if dash.is_empty() {
            String::new()
        } else {
            format!(r#" stroke-dasharray="{dash}""#)
        };
        let pts: Vec<String> = ser
            .points
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.map(|p| format!("{:.1},{:.1}", x(i), y(p.0))))
            .collect();
        let _ = writeln!(s, r#"<g><title>{}</title>"#, esc(ser.name));
        if pts.len() > 1 {
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash_attr}/>"#,
                pts.join(" ")
            );
        }
        for (i, p) in ser.points.iter().enumerate() {
            if let Some((med, lo, hi)) = p {
                let xx = x(i);
                let _ = writeln!(
                    s,
                    r#"<line x1="{xx:.1}" x2="{xx:.1}" y1="{:.1}" y2="{:.1}" stroke="{color}"/><circle cx="{xx:.1}" cy="{:.1}" r="3.5" fill="{color}"><title>{} {} threads: {} M ops/s [{}–{}]</title></circle>"#,
                    y(*lo),
                    y(*hi),
                    y(*med),
                    esc(ser.name),
                    threads[i],
                    sig3(*med),
                    sig3(*lo),
                    sig3(*hi)
                );
            }
        }
        let _ = writeln!(s, "</g>");
        let ly = top + 10.0 + 20.0 * k as f64;
        let lx = left + pw + 15.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"{dash_attr}/><text x="{}" y="{}">{}</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0,
            esc(ser.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Grouped bars: per workload, one bar per allocator (RSS MiB at `threads`
/// threads, log scale), titled `title`. The axis spans `range` (which should
/// include the rows' values), so figures drawn with the same `range` share
/// one scale.
pub fn rss(
    title: &str,
    rows: &[(&str, Vec<Option<f64>>)],
    allocators: &[&str],
    threads: usize,
    range: &[f64],
) -> String {
    let groups = rows.len().max(1);
    let bars = allocators.len().max(1);
    let (left, right, top, bottom) = (70.0, 160.0, 40.0, 90.0);
    let group_w = (bars as f64 * 9.0 + 14.0).max(60.0);
    let pw = group_w * groups as f64;
    let ph = 300.0;
    let (w, h) = (left + pw + right, top + ph + bottom);
    let axis = LogAxis::new(
        rows.iter()
            .flat_map(|r| r.1.iter().flatten().copied())
            .chain(range.iter().copied()),
    );
    let y = |v: f64| top + ph * (1.0 - axis.frac(v));
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{} (MiB, log scale) at {threads} thread(s), median</text>"#,
        left + pw / 2.0,
        esc(title)
    );
    for (v, major) in axis.ticks() {
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="{}"/><text x="{}" y="{:.1}" text-anchor="end" fill="#444">{}</text>"##,
            left + pw,
            if major { "#ccc" } else { "#eee" },
            left - 6.0,
            yy + 4.0,
            num(v)
        );
    }
    let base = top + ph;
    for (g, (name, values)) in rows.iter().enumerate() {
        let gx = left + group_w * g as f64 + 7.0;
        for (b, v) in values.iter().enumerate() {
            let Some(v) = v else { continue };
            let (color, _) = style(allocators[b]);
            let yy = y(*v);
            let _ = writeln!(
                s,
                r#"<rect x="{:.1}" y="{yy:.1}" width="8" height="{:.1}" fill="{color}"><title>{} {}: {v:.1} MiB</title></rect>"#,
                gx + 9.0 * b as f64,
                (base - yy).max(0.5),
                esc(name),
                esc(allocators[b])
            );
        }
        let cx = gx + 4.5 * bars as f64;
        let _ = writeln!(
            s,
            r#"<text x="{cx:.1}" y="{}" text-anchor="end" transform="rotate(-40 {cx:.1} {})">{}</text>"#,
            base + 14.0,
            base + 14.0,
            esc(name)
        );
    }
    let _ = writeln!(
        s,
        r#"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    for (k, a) in allocators.iter().enumerate() {
        let (color, _) = style(a);
        let ly = top + 10.0 + 20.0 * k as f64;
        let lx = left + pw + 15.0;
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="{}" width="14" height="10" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            ly - 5.0,
            lx + 20.0,
            ly + 4.0,
            esc(a)
        );
    }
    s.push_str("</svg>\n");
    s
}
