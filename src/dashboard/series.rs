//! Requests per second and latency percentiles over the last minutes, in
//! total and per route, for the dashboard's charts.
//!
//! Totals come from the workers' request counters (exact); per-route
//! figures from the rings of recent requests (`request_ring`), scaled by
//! how many records a reader missed when the ring wrapped between two
//! reads. Latencies go into small log histograms (8 buckets per decade,
//! 10 us to 100 s), so a percentile is good to about 15%. Routes are
//! bounded: past [`MAX_ROUTES`] distinct ones, the rest count as
//! [`OTHER`]. Pure: no I/O, time is passed in.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;

/// Width of one point of the charts.
pub const BUCKET_MS: u64 = 2_000;
/// Points kept (5 minutes).
pub const KEEP: usize = 150;
pub const MAX_ROUTES: usize = 50;
pub const OTHER: &str = "(other routes)";
/// Routes given their own line in the charts.
const SHOWN_ROUTES: usize = 8;

const PER_DECADE: f64 = 8.0;
const MIN_US: f64 = 10.0;
const HIST: usize = 56;

#[derive(Clone, Default)]
struct Hist {
    counts: Vec<u32>,
}

impl Hist {
    fn add(&mut self, micros: u64, n: u32) {
        if self.counts.is_empty() {
            self.counts = vec![0; HIST];
        }
        let x = (micros as f64).max(MIN_US);
        let i = (((x / MIN_US).log10() * PER_DECADE) as usize).min(HIST - 1);
        self.counts[i] += n;
    }

    #[cfg(test)]
    fn merge(&mut self, other: &Hist) {
        for (i, c) in other.counts.iter().enumerate() {
            if *c > 0 {
                if self.counts.is_empty() {
                    self.counts = vec![0; HIST];
                }
                self.counts[i] += c;
            }
        }
    }

    /// The `q` quantile in milliseconds (the bucket's geometric middle).
    fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total: u64 = self.counts.iter().map(|c| *c as u64).sum();
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += *c as u64;
            if seen >= rank {
                let mid = MIN_US * 10f64.powf((i as f64 + 0.5) / PER_DECADE);
                return Some((mid / 1000.0 * 100.0).round() / 100.0);
            }
        }
        None
    }
}

#[derive(Default)]
struct Point {
    /// Start of the bucket, unix ms.
    at_ms: u64,
    requests: u64,
    latency: Hist,
    /// Per route index: requests (scaled) and latencies seen.
    routes: HashMap<usize, (f64, Hist)>,
}

#[derive(Default)]
pub struct Series {
    points: VecDeque<Point>,
    route_names: Vec<String>,
    route_ids: HashMap<String, usize>,
}

/// What the charts draw.
#[derive(Debug, Serialize, PartialEq)]
pub struct Charts {
    pub bucket_ms: u64,
    /// Start of each point, unix ms.
    pub t: Vec<u64>,
    pub total: Line,
    pub routes: Vec<RouteLine>,
}

#[derive(Debug, Serialize, PartialEq, Default)]
pub struct Line {
    pub rps: Vec<f64>,
    pub p50: Vec<Option<f64>>,
    pub p95: Vec<Option<f64>>,
    pub p99: Vec<Option<f64>>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct RouteLine {
    pub route: String,
    /// Requests over the whole window (scaled).
    pub requests: f64,
    #[serde(flatten)]
    pub line: Line,
}

impl Series {
    /// The point holding `at_ms`, the window slid forward to it if needed;
    /// None for a time before the window.
    fn point(&mut self, at_ms: u64) -> Option<&mut Point> {
        let start = at_ms - at_ms % BUCKET_MS;
        let span = BUCKET_MS * KEEP as u64;
        let mut next = match self.points.back() {
            None => start,
            Some(last) if last.at_ms < start => last.at_ms + BUCKET_MS,
            Some(_) => u64::MAX,
        };
        if next != u64::MAX && start - next >= span {
            // A long silence: start afresh rather than push empty points.
            self.points.clear();
            next = start.saturating_sub(span - BUCKET_MS);
        }
        while next <= start {
            self.points.push_back(Point {
                at_ms: next,
                ..Point::default()
            });
            next += BUCKET_MS;
        }
        while self.points.len() > KEEP {
            self.points.pop_front();
        }
        let first = self.points.front()?.at_ms;
        if start < first {
            return None;
        }
        self.points.get_mut(((start - first) / BUCKET_MS) as usize)
    }

    fn route_id(&mut self, route: &str) -> usize {
        if let Some(id) = self.route_ids.get(route) {
            return *id;
        }
        let name = if self.route_names.len() >= MAX_ROUTES {
            OTHER
        } else {
            route
        };
        if let Some(id) = self.route_ids.get(name) {
            return *id;
        }
        let id = self.route_names.len();
        self.route_names.push(name.to_string());
        self.route_ids.insert(name.to_string(), id);
        id
    }

    /// `n` requests finished (counters) in the interval ending at `now_ms`.
    pub fn count(&mut self, now_ms: u64, n: u64) {
        if let Some(p) = self.point(now_ms) {
            p.requests += n;
        }
    }

    /// One request seen in a ring; `weight` makes up for records missed.
    pub fn finished(&mut self, end_ms: u64, route: &str, micros: u64, weight: f64) {
        let id = self.route_id(route);
        if let Some(p) = self.point(end_ms) {
            p.latency.add(micros, 1);
            let r = p.routes.entry(id).or_default();
            r.0 += weight;
            r.1.add(micros, 1);
        }
    }

    /// The charts' data: the points closed by `now_ms` (the open one would
    /// read as a drop at the right edge).
    pub fn charts(&mut self, now_ms: u64) -> Charts {
        self.point(now_ms);
        let points: Vec<&Point> = self
            .points
            .iter()
            .filter(|p| p.at_ms + BUCKET_MS <= now_ms)
            .collect();
        let secs = BUCKET_MS as f64 / 1000.0;
        let round = |x: f64| (x * 100.0).round() / 100.0;
        let t: Vec<u64> = points.iter().map(|p| p.at_ms).collect();
        let line = |hists: Vec<Hist>, counts: Vec<f64>| Line {
            rps: counts.iter().map(|c| round(c / secs)).collect(),
            p50: hists.iter().map(|h| h.quantile_ms(0.50)).collect(),
            p95: hists.iter().map(|h| h.quantile_ms(0.95)).collect(),
            p99: hists.iter().map(|h| h.quantile_ms(0.99)).collect(),
        };
        let total = line(
            points.iter().map(|p| p.latency.clone()).collect(),
            points.iter().map(|p| p.requests as f64).collect(),
        );
        let mut per_route: Vec<(usize, f64)> = (0..self.route_names.len())
            .map(|id| {
                let n = points
                    .iter()
                    .filter_map(|p| p.routes.get(&id))
                    .map(|r| r.0)
                    .sum();
                (id, n)
            })
            .filter(|(_, n)| *n > 0.0)
            .collect();
        per_route.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let routes = per_route
            .into_iter()
            .take(SHOWN_ROUTES)
            .map(|(id, n)| {
                let mut hists = Vec::new();
                let mut counts = Vec::new();
                for p in &points {
                    let (c, h) = p.routes.get(&id).cloned().unwrap_or_default();
                    counts.push(c);
                    hists.push(h);
                }
                RouteLine {
                    route: self.route_names[id].clone(),
                    requests: round(n),
                    line: line(hists, counts),
                }
            })
            .collect();
        Charts {
            bucket_ms: BUCKET_MS,
            t,
            total,
            routes,
        }
    }

    /// Latencies of everything in the window, merged (for tests and totals).
    #[cfg(test)]
    fn window_quantile(&self, q: f64) -> Option<f64> {
        let mut h = Hist::default();
        for p in &self.points {
            h.merge(&p.latency);
        }
        h.quantile_ms(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_within_a_bucket() {
        let mut h = Hist::default();
        for ms in 1..=100u64 {
            h.add(ms * 1000, 1);
        }
        let p50 = h.quantile_ms(0.5).unwrap();
        let p99 = h.quantile_ms(0.99).unwrap();
        assert!((40.0..=60.0).contains(&p50), "{p50}");
        assert!((85.0..=115.0).contains(&p99), "{p99}");
        assert_eq!(Hist::default().quantile_ms(0.5), None);
    }

    #[test]
    fn routes_rates_and_percentiles() {
        let mut s = Series::default();
        let t0 = 1_000_000;
        for i in 0..30 {
            s.finished(t0 + i * 10, "GET /a", 30_000, 1.0);
        }
        for i in 0..10 {
            s.finished(t0 + i * 10, "GET /b", 10_000, 2.0);
        }
        s.count(t0 + 500, 50);
        assert!(s.charts(t0 + 1_000).t.is_empty(), "the point is still open");
        let c = s.charts(t0 + BUCKET_MS);
        assert_eq!(c.t.last(), Some(&(t0 - t0 % BUCKET_MS)));
        assert_eq!(c.total.rps.last(), Some(&25.0)); // 50 in a 2 s point
        assert_eq!(c.routes[0].route, "GET /a");
        assert_eq!(c.routes[0].requests, 30.0);
        assert_eq!(c.routes[1].requests, 20.0); // weighted
        let p = c.routes[0].line.p50.last().unwrap().unwrap();
        assert!((25.0..=36.0).contains(&p), "{p}");
        assert!(s.window_quantile(0.99).is_some());
    }

    #[test]
    fn the_window_slides_and_routes_are_bounded() {
        let mut s = Series::default();
        for i in 0..(MAX_ROUTES + 20) {
            s.finished(10_000, &format!("GET /{i}"), 1_000, 1.0);
        }
        assert_eq!(s.route_names.len(), MAX_ROUTES + 1);
        assert_eq!(s.route_id("GET /new"), s.route_id(OTHER));
        let later = 10_000 + BUCKET_MS * (KEEP as u64 + 5);
        let c = s.charts(later);
        assert_eq!(c.t.len(), KEEP - 1);
        assert!(c.routes.is_empty(), "the old points slid out");
        // A record older than the window is dropped, not misplaced.
        s.finished(10_000, "GET /late", 1_000, 1.0);
        assert!(s.charts(later).routes.is_empty());
    }
}
