//! A CPU allowance for the threads of one replica: a cgroup (v1 `cpu` controller) with a CFS
//! quota, so that several replicas in one process on a small machine each get the CPU time of a
//! machine of their own, and the load's figures show whether a second replica adds throughput
//! when the database is not the bottleneck. Linux only; needs root (or a delegated hierarchy).

use std::fs;
use std::path::{Path, PathBuf};

/// The v1 `cpu` hierarchy's root, where this example's groups are made.
const ROOT: &str = "/sys/fs/cgroup/cpu";
/// The CFS period: short, so that a replica over its quota waits a few ms, not 100.
const PERIOD_US: u64 = 10_000;

/// One group; removed on drop (its threads moved back to the root first).
pub struct CpuGroup {
    dir: PathBuf,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", path.display())
}

impl CpuGroup {
    /// A fresh group `name` allowed `cores` CPUs (e.g. 0.5: half of one core's time).
    pub fn new(name: &str, cores: f64) -> Result<Self, String> {
        if !Path::new(ROOT).join("cpu.cfs_quota_us").exists() {
            return Err(format!(
                "--replica-cpu needs the cgroup v1 cpu controller at {ROOT} (not found: on a \
                 cgroup v2 host run each replica as a process of its own under a CPU quota)"
            ));
        }
        if !(cores.is_finite() && cores >= 0.01) {
            return Err(format!("--replica-cpu {cores}: give at least 0.01 cores"));
        }
        let dir = Path::new(ROOT).join(name);
        fs::create_dir(&dir).map_err(|e| io("creating", &dir, e))?;
        let group = CpuGroup { dir };
        group.write("cpu.cfs_period_us", &PERIOD_US.to_string())?;
        let quota = (cores * PERIOD_US as f64).round() as u64;
        group.write("cpu.cfs_quota_us", &quota.to_string())?;
        Ok(group)
    }

    fn write(&self, file: &str, value: &str) -> Result<(), String> {
        let path = self.dir.join(file);
        fs::write(&path, value).map_err(|e| io("writing", &path, e))
    }

    fn read(&self, file: &str) -> Result<String, String> {
        let path = self.dir.join(file);
        fs::read_to_string(&path).map_err(|e| io("reading", &path, e))
    }

    /// The group's `tasks` file, for [`join`] (a path, so that a runtime's thread-start hook
    /// does not keep the group alive past its drop).
    pub fn tasks_file(&self) -> PathBuf {
        self.dir.join("tasks")
    }

    /// The threads in the group.
    pub fn threads(&self) -> Result<Vec<String>, String> {
        Ok(self
            .read("tasks")?
            .split_whitespace()
            .map(str::to_string)
            .collect())
    }

    /// CPU time used so far by the group's threads (still running ones), in seconds.
    pub fn cpu_seconds(&self) -> Result<f64, String> {
        let mut ns = 0u64;
        for tid in self.threads()? {
            let path = PathBuf::from(format!("/proc/self/task/{tid}/schedstat"));
            // A thread that has just ended has no file any more; its time is lost to the sum.
            if let Ok(s) = fs::read_to_string(&path) {
                ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| format!("{}: unexpected content {s:?}", path.display()))?;
            }
        }
        Ok(ns as f64 / 1e9)
    }

    /// Periods in which the group used up its quota and waited (`nr_throttled` of `cpu.stat`).
    pub fn throttled_periods(&self) -> Result<u64, String> {
        let stat = self.read("cpu.stat")?;
        stat.lines()
            .find_map(|l| l.strip_prefix("nr_throttled "))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("{}/cpu.stat: no nr_throttled", self.dir.display()))
    }
}

/// Moves the calling thread into the group whose `tasks` file this is (v1 takes thread ids).
pub fn join(tasks: &Path) -> Result<(), String> {
    let link = fs::read_link("/proc/thread-self")
        .map_err(|e| io("reading", Path::new("/proc/thread-self"), e))?;
    let tid = link
        .file_name()
        .and_then(|t| t.to_str())
        .ok_or_else(|| format!("/proc/thread-self -> {}: no thread id", link.display()))?;
    fs::write(tasks, tid).map_err(|e| io("writing", tasks, e))
}

impl Drop for CpuGroup {
    fn drop(&mut self) {
        // A group with threads cannot be removed: move any left back to the root first.
        if let Ok(threads) = self.threads() {
            for tid in threads {
                let _ = fs::write(Path::new(ROOT).join("tasks"), &tid);
            }
        }
        if let Err(e) = fs::remove_dir(&self.dir) {
            eprintln!("removing {}: {e}", self.dir.display());
        }
    }
}

/// User and system ticks of one `/proc/…/stat` and the process's name.
fn stat_ticks(path: &Path) -> Option<(String, u64)> {
    let stat = fs::read_to_string(path).ok()?;
    // "pid (comm) state ppid …": the name may hold spaces, so split at the last ')'.
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // After the name, field 3 of stat(5) (state) comes first: utime (14) and stime (15).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((stat.get(open + 1..close)?.to_string(), utime + stime))
}

/// The kernel's USER_HZ, the unit of `/proc/…/stat`'s times (100 on Linux's mainstream targets).
const USER_HZ: f64 = 100.0;

/// CPU seconds used so far by the processes named `comm` (e.g. the PostgreSQL server's).
pub fn cpu_seconds_of(comm: &str) -> f64 {
    let Ok(dir) = fs::read_dir("/proc") else {
        return f64::NAN;
    };
    let ticks: u64 = dir
        .flatten()
        .filter_map(|e| stat_ticks(&e.path().join("stat")))
        .filter(|(name, _)| name == comm)
        .map(|(_, t)| t)
        .sum();
    ticks as f64 / USER_HZ
}

/// CPU seconds used so far by this process, all its threads.
pub fn own_cpu_seconds() -> f64 {
    stat_ticks(Path::new("/proc/self/stat")).map_or(f64::NAN, |(_, t)| t as f64 / USER_HZ)
}
