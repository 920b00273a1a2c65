//! The `sentry watch` loop (see the module docs of [`super`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::discover::{self, Change, CiScan};
use super::members::{JobControl, Members, Meter};
use super::target::{self, CgroupTarget};
use super::{WatchAction, WatchError, WatchOptions, WatchSummary};
use crate::act;
use crate::capture::kernel::{self, AnalysisBudget, Probe};
use crate::capture::{cgroup, TreeControl};
use crate::cost::CostMeter;
use crate::detect::regression::RegressionDetector;
use crate::model::{Action, Incident, Sample};
use crate::notify::{JobRef, Notifier, NotifyEvent};
use crate::store::{DecisionKeep, EventSink, NewRun, Recorder, WatchedEnd};
use crate::supervise::control::{self, ControlAction, ControlReply, ControlServer};
use crate::supervise::say;
use crate::supervise::watch::{Escalation, Watch};
use crate::supervise::StoreChoice;

/// How often the host is scanned for CI jobs (the issue asks for jobs to be followed
/// within a second of coming and going).
const DISCOVER_EVERY: Duration = Duration::from_millis(500);

/// How often the cgroups of the watched jobs are looked at again (new sub-cgroups, a job's
/// processes that moved, a target that was removed).
const CGROUPS_EVERY: Duration = Duration::from_secs(1);

/// How often the metrics exposition is written for the textfile collector.
const TEXTFILE_EVERY: Duration = Duration::from_secs(5);

/// A watched job's samples are stored at most this often (with their interval's peaks): a
/// fleet host records many jobs at once, and a commit per job per second was a third of
/// the watch's own CPU over 50 jobs (`cargo xtask bench fleet`).
const SAMPLE_STORE_EVERY_S: f64 = 5.0;

/// How often a job's cost so far is written to the store.
const COST_STORE_EVERY: Duration = Duration::from_secs(5);

/// How long the ring buffer is waited on between rounds of work.
const POLL: Duration = Duration::from_millis(20);

/// A watched job.
struct Job {
    key: String,
    name: String,
    labels: BTreeMap<String, String>,
    control: Arc<JobControl>,
    /// The cgroup a cgroup target names (its processes are that cgroup's subtree).
    cgroup: Option<PathBuf>,
    /// cgroup ids this job's writes are captured from.
    tracked: BTreeSet<u64>,
    watch: Watch,
    recorder: Option<Recorder>,
    meter: Meter,
    analysis: AnalysisBudget,
    started: Instant,
    start_ns: u64,
    last_cpu: (u64, Instant),
    cpu_peak: f64,
    mem_peak: Option<u64>,
    pids_peak: u32,
    captured: u64,
    bytes: u64,
    not_output: u64,
    shed: u64,
    lost: u64,
    incidents: Vec<Incident>,
    /// Stopped or paused, by a decision or through the control socket.
    flags: Arc<JobFlags>,
    /// Where the dashboard's controls reach this job.
    _control_server: Option<ControlServer>,
    /// Why its output is not captured, when it is not.
    uncaptured: Option<String>,
    /// Who the job is in alerts and the events log.
    notify_ref: JobRef,
    /// Which decisions are worth logging (the same the store keeps).
    keep: DecisionKeep,
    /// What the job has cost while watched.
    cost: CostMeter,
    /// When its cost was last written to the store.
    cost_stored: Instant,
    /// The job against its learned baseline.
    regression: RegressionDetector,
}

/// A job's state that its control socket changes too.
#[derive(Debug, Default)]
struct JobFlags {
    stopped: AtomicBool,
    paused: AtomicBool,
}

impl JobFlags {
    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }
}

/// How long a control request waits for a stopped job's processes to end.
const CONTROL_WAIT: Duration = Duration::from_secs(4);

/// Answers the dashboard's control requests for one watched job.
struct JobHandler {
    control: Arc<JobControl>,
    flags: Arc<JobFlags>,
    sink: EventSink,
    name: String,
}

impl JobHandler {
    fn handle(&self, action: ControlAction, actor: &str) -> ControlReply {
        let reply = |ok: bool, outcome: String, status: &str| ControlReply {
            ok,
            outcome,
            status: status.to_string(),
        };
        let tree: Arc<dyn TreeControl> = self.control.clone();
        let paused = self.flags.paused.load(Ordering::SeqCst);
        let result = match action {
            _ if self.flags.stopped() => reply(true, "already stopped".into(), "stopped"),
            ControlAction::Restart => reply(
                false,
                "sentry watch cannot restart a job it did not start; stop it and let its CI \
                 system retry it"
                    .into(),
                if paused { "paused" } else { "running" },
            ),
            ControlAction::Pause if paused => reply(true, "already paused".into(), "paused"),
            ControlAction::Pause => match act::pause(&tree) {
                Ok(()) => {
                    self.flags.paused.store(true, Ordering::SeqCst);
                    self.sink.status("paused");
                    say!(
                        "sentry watch: {}: paused at the request of {actor}",
                        self.name
                    );
                    reply(true, "paused (SIGSTOP to its processes)".into(), "paused")
                }
                Err(err) => reply(false, format!("pausing failed: {err}"), "running"),
            },
            ControlAction::Resume if !paused => reply(true, "not paused".into(), "running"),
            ControlAction::Resume => match act::resume(&tree) {
                Ok(()) => {
                    self.flags.paused.store(false, Ordering::SeqCst);
                    self.sink.status("running");
                    say!(
                        "sentry watch: {}: resumed at the request of {actor}",
                        self.name
                    );
                    reply(true, "resumed (SIGCONT to its processes)".into(), "running")
                }
                Err(err) => reply(false, format!("resuming failed: {err}"), "paused"),
            },
            ControlAction::Kill => {
                say!(
                    "sentry watch: {}: stopping it at the request of {actor}",
                    self.name
                );
                self.flags.stopped.store(true, Ordering::SeqCst);
                self.flags.paused.store(false, Ordering::SeqCst);
                let asked = Instant::now();
                act::stop(&tree, act::STOP_GRACE);
                while !self.control.pids().is_empty() && asked.elapsed() < CONTROL_WAIT {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let took = asked.elapsed().as_secs_f64();
                if self.control.pids().is_empty() {
                    reply(
                        true,
                        format!("stopped: its processes ended {took:.1} s after SIGTERM"),
                        "stopped",
                    )
                } else {
                    reply(
                        false,
                        format!("asked to end, but processes are still running {took:.1} s later"),
                        "stopping",
                    )
                }
            }
        };
        self.sink
            .control(actor, action.as_str(), &result.outcome, &result.status);
        result
    }
}

/// What a new job is made of.
struct JobSpec {
    key: String,
    name: String,
    labels: BTreeMap<String, String>,
    members: Members,
    cgroup: Option<PathBuf>,
    leader: i32,
    job_key: String,
    command: Vec<String>,
}

struct Fleet<'a> {
    options: &'a WatchOptions,
    probe: Option<Probe>,
    store: Option<PathBuf>,
    root: PathBuf,
    jobs: HashMap<u32, Job>,
    next_id: u32,
    /// Which job a cgroup target's key maps to.
    by_key: HashMap<String, u32>,
    /// cgroup id -> refcount of the jobs that capture from it.
    tracked: HashMap<u64, usize>,
    /// cgroup id -> the one job every write in it belongs to (cgroup targets).
    owner: HashMap<u64, u32>,
    /// Process -> job, for cgroups that jobs share (CI jobs).
    pid_job: HashMap<i32, u32>,
    /// Process -> the id of its cgroup, for the processes of CI jobs.
    pid_cgroup: HashMap<i32, u64>,
    /// The next discovery looks up which cgroups CI jobs' processes are in.
    cgroups_due: bool,
    ci: Option<CiScan>,
    /// cgroups never tracked: the root (the whole host) and sentry's own.
    never: BTreeSet<u64>,
    /// Writes in tracked cgroups that belong to no watched job (a runner agent).
    unattributed: u64,
    /// Losses counted in cgroups no longer tracked.
    lost_untracked: u64,
    summary: WatchSummary,
    finishing: Vec<std::thread::JoinHandle<()>>,
    /// Alert delivery and the events log, when configured.
    notifier: Option<Notifier>,
    /// Chunks shed by jobs that have ended.
    shed_ended: u64,
    /// The last textfile write failed (said once, until one succeeds).
    textfile_error: bool,
}

/// Watches until `options.stop` is set or `options.duration` has passed.
pub fn watch(options: &WatchOptions) -> Result<WatchSummary, WatchError> {
    if options.cgroups.is_empty()
        && options.pids.is_empty()
        && options.units.is_empty()
        && !options.discover_ci
    {
        return Err(WatchError::NoTarget);
    }
    let root = target::cgroup2_root()?;
    let mut targets: Vec<CgroupTarget> = Vec::new();
    for c in &options.cgroups {
        targets.push(target::resolve_cgroup(&root, c)?);
    }
    for &p in &options.pids {
        targets.push(target::resolve_pid(&root, p)?);
    }
    for u in &options.units {
        targets.push(target::resolve_unit(&root, u)?);
    }
    for t in &targets {
        target::check_scope(&root, t)?;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        say!(
            "sentry watch: warning: not running as root: processes of other users are not \
             seen and output capture needs CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN"
        );
    }
    let notifier = match &options.notify {
        Some(config) => Some(
            Notifier::start(config.clone(), store_path(options))
                .map_err(|e| WatchError::Notify(e.to_string()))?,
        ),
        None => None,
    };
    let probe = match kernel::check_host().and_then(|()| Probe::load(false)) {
        Ok(probe) => {
            kernel::release_freed_memory();
            Some(probe)
        }
        Err(err) => {
            say!(
                "sentry watch: output capture is unavailable ({err}); watching CPU, memory, \
                 processes and I/O only"
            );
            None
        }
    };
    let mut never = BTreeSet::new();
    if let Ok(id) = cgroup::id_of(&root) {
        never.insert(id);
    }
    if let Some(own) = cgroup::cgroup_of_pid(&root, std::process::id() as i32) {
        if let Ok(id) = cgroup::id_of(&own) {
            never.insert(id);
        }
    }
    let store = store_path(options);
    if store.is_none() && options.store != StoreChoice::Off {
        say!("sentry watch: not recording: no place for the store (set --db or HOME)");
    }
    let mut fleet = Fleet {
        options,
        probe,
        store,
        root,
        jobs: HashMap::new(),
        next_id: 0,
        by_key: HashMap::new(),
        tracked: HashMap::new(),
        owner: HashMap::new(),
        pid_job: HashMap::new(),
        pid_cgroup: HashMap::new(),
        cgroups_due: true,
        ci: options.discover_ci.then(CiScan::new),
        never,
        unattributed: 0,
        lost_untracked: 0,
        summary: WatchSummary::default(),
        finishing: Vec::new(),
        notifier,
        shed_ended: 0,
        textfile_error: false,
    };
    if !options.quiet {
        let what: Vec<String> = targets
            .iter()
            .map(|t| format!("{} ({})", t.name, t.path.display()))
            .chain(
                options
                    .discover_ci
                    .then(|| "CI jobs on this host".to_string()),
            )
            .collect();
        say!(
            "sentry watch: watching {}; action {}{}; {}",
            what.join(", "),
            match options.action {
                WatchAction::Alert => "alert (add --action kill or pause to act)",
                WatchAction::Kill => "kill",
                WatchAction::Pause => "pause",
            },
            if options.shadow {
                " in shadow mode (recorded, nothing is signalled)"
            } else {
                ""
            },
            if fleet.probe.is_some() {
                "output captured by eBPF"
            } else {
                "output not captured"
            }
        );
    }
    for t in targets {
        fleet.start_cgroup_job(t);
    }
    fleet.run();
    Ok(fleet.finish())
}

impl Fleet<'_> {
    fn run(&mut self) {
        let begun = Instant::now();
        let mut next_discover = Instant::now();
        let mut next_cgroups = Instant::now() + CGROUPS_EVERY;
        let mut next_sample = Instant::now() + self.options.sample_interval;
        let mut next_textfile = Instant::now();
        loop {
            if self.options.stop.load(Ordering::SeqCst)
                || self.options.duration.is_some_and(|d| begun.elapsed() >= d)
            {
                break;
            }
            match &self.probe {
                Some(probe) => probe.wait_for_events(POLL),
                None => std::thread::sleep(POLL),
            }
            self.drain();
            let now = Instant::now();
            if now >= next_discover {
                next_discover = now + DISCOVER_EVERY;
                self.discover();
            }
            if now >= next_cgroups {
                next_cgroups = now + CGROUPS_EVERY;
                self.refresh_cgroups();
            }
            if now >= next_sample {
                next_sample = now + self.options.sample_interval;
                self.sample_all();
            }
            if self.options.textfile_dir.is_some() && now >= next_textfile {
                next_textfile = now + TEXTFILE_EVERY;
                self.write_textfile();
            }
        }
    }

    /// Hands every record in the ring to its job.
    fn drain(&mut self) {
        loop {
            let (cgroup_id, chunk) = {
                let Some(probe) = self.probe.as_mut() else {
                    return;
                };
                let Some(item) = probe.events.next() else {
                    return;
                };
                match kernel::Record::parse(&item) {
                    Some(record) => (record.header.cgroup_id, record.chunk(record.at(0))),
                    None => continue,
                }
            };
            let id = match self.owner.get(&cgroup_id) {
                Some(&id) => Some(id),
                None => self.pid_job.get(&(chunk.pid as i32)).copied(),
            };
            let id = match id {
                Some(id) => id,
                None => {
                    // A process the last scan has not seen: look at it now.
                    let found = self.ci.as_mut().map(|ci| ci.classify(chunk.pid as i32));
                    match found {
                        Some((Some(key), change)) => {
                            if let Some(Change::Started(job)) = change {
                                self.start_ci_job(job);
                            }
                            match self.by_key.get(&key) {
                                Some(&id) => {
                                    self.pid_job.insert(chunk.pid as i32, id);
                                    id
                                }
                                None => {
                                    self.unattributed += 1;
                                    continue;
                                }
                            }
                        }
                        _ => {
                            self.unattributed += 1;
                            continue;
                        }
                    }
                }
            };
            let Some(job) = self.jobs.get_mut(&id) else {
                self.unattributed += 1;
                continue;
            };
            let mut chunk = chunk;
            chunk.at = chunk.at.saturating_sub(Duration::from_nanos(job.start_ns));
            job.captured += 1;
            job.bytes += chunk.bytes.len() as u64;
            if chunk.fd != 1 && chunk.fd != 2 {
                job.not_output += 1;
                continue;
            }
            if !job.analysis.admit(chunk.at) {
                job.shed += 1;
                continue;
            }
            job.watch.output(&chunk);
        }
    }

    fn discover(&mut self) {
        let Some(ci) = self.ci.as_mut() else {
            return;
        };
        let changes = ci.scan();
        for change in changes {
            match change {
                Change::Started(job) => self.start_ci_job(job),
                Change::Ended(key) => {
                    if let Some(&id) = self.by_key.get(&key) {
                        self.end_job(id, "exited");
                    }
                }
            }
        }
        // Processes -> jobs, and the cgroups each job's processes are in.
        let Some(ci) = self.ci.as_ref() else {
            return;
        };
        self.pid_job.clear();
        self.pid_cgroup.retain(|pid, _| ci.is_known(*pid));
        let cgroups_due = std::mem::take(&mut self.cgroups_due);
        let mut wanted: Vec<(u32, BTreeSet<u64>)> = Vec::new();
        for (key, &id) in &self.by_key {
            if self.jobs.get(&id).is_none_or(|j| j.cgroup.is_some()) {
                continue;
            }
            let pids = ci.pids_of(key);
            for &pid in &pids {
                self.pid_job.insert(pid, id);
            }
            // The cgroups a job's processes are in are looked up when the job is new and then
            // once a second (a child starts in its parent's cgroup: looking each short-lived
            // process up would cost more than the rest of the watch).
            let job_tracked = self.jobs.get(&id).is_some_and(|j| !j.tracked.is_empty());
            if job_tracked && !cgroups_due {
                continue;
            }
            let mut cgroups = BTreeSet::new();
            for pid in pids {
                let cg = *self.pid_cgroup.entry(pid).or_insert_with(|| {
                    cgroup::cgroup_of_pid(&self.root, pid)
                        .and_then(|p| cgroup::id_of(&p).ok())
                        .unwrap_or(0)
                });
                if cg != 0 {
                    cgroups.insert(cg);
                }
            }
            wanted.push((id, cgroups));
        }
        for (id, cgroups) in wanted {
            self.set_tracked(id, cgroups);
        }
    }

    /// Looks again at the cgroup targets: new sub-cgroups are tracked, removed targets end.
    /// The cgroups of CI jobs' processes are looked up at the next discovery.
    fn refresh_cgroups(&mut self) {
        self.cgroups_due = true;
        let targets: Vec<(u32, PathBuf)> = self
            .jobs
            .iter()
            .filter_map(|(&id, j)| j.cgroup.clone().map(|p| (id, p)))
            .collect();
        for (id, path) in targets {
            if !target::exists(&path) {
                self.end_job(id, "exited");
                continue;
            }
            let ids: BTreeSet<u64> = cgroup::subtree(&path)
                .iter()
                .filter_map(|p| cgroup::id_of(p).ok())
                .collect();
            self.set_tracked(id, ids);
        }
    }

    /// Makes job `id` capture from exactly `wanted` (minus the cgroups never tracked).
    fn set_tracked(&mut self, id: u32, wanted: BTreeSet<u64>) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let exclusive = job.cgroup.is_some();
        let (skipped, wanted): (BTreeSet<u64>, BTreeSet<u64>) =
            wanted.into_iter().partition(|cg| self.never.contains(cg));
        if !skipped.is_empty() && job.uncaptured.is_none() && self.probe.is_some() {
            let why = "its processes share the root cgroup or sentry's own, and capturing \
                       there would capture the whole host; CPU, memory and I/O are still \
                       watched"
                .to_string();
            if !self.options.quiet {
                say!(
                    "sentry watch: {}: output of some processes is not captured: {why}",
                    job.name
                );
            }
            job.uncaptured = Some(why);
        }
        let old = std::mem::take(&mut job.tracked);
        let name = job.name.clone();
        for &cg in old.difference(&wanted) {
            self.release(cg);
            if exclusive && self.owner.get(&cg) == Some(&id) {
                self.owner.remove(&cg);
            }
        }
        let mut kept = BTreeSet::new();
        for &cg in &wanted {
            if old.contains(&cg) {
                kept.insert(cg);
                continue;
            }
            if self.acquire(cg, &name) {
                kept.insert(cg);
                if exclusive {
                    self.owner.entry(cg).or_insert(id);
                }
            }
        }
        if let Some(job) = self.jobs.get_mut(&id) {
            job.tracked = kept;
        }
    }

    fn acquire(&mut self, cg: u64, job: &str) -> bool {
        if let Some(n) = self.tracked.get_mut(&cg) {
            *n += 1;
            return true;
        }
        let Some(probe) = self.probe.as_mut() else {
            return false;
        };
        match probe.track(cg, self.options.capture_budget_per_s) {
            Ok(()) => {
                self.tracked.insert(cg, 1);
                true
            }
            Err(err) => {
                say!("sentry watch: {job}: cannot capture the output of cgroup {cg}: {err}");
                false
            }
        }
    }

    fn release(&mut self, cg: u64) {
        let Some(n) = self.tracked.get_mut(&cg) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            self.tracked.remove(&cg);
            if let Some(probe) = self.probe.as_mut() {
                self.lost_untracked += probe.counters(cg).ring_full;
                probe.untrack(cg);
            }
        }
    }

    fn new_job(&mut self, spec: JobSpec) -> u32 {
        let JobSpec {
            key,
            name,
            labels,
            members,
            cgroup,
            leader,
            job_key,
            command,
        } = spec;
        let id = self.next_id;
        self.next_id += 1;
        let socket = self
            .store
            .as_ref()
            .map(|db| control::job_socket_path(db, std::process::id(), id));
        let command_for_notify = command.clone();
        let baseline_key = job_key.clone();
        let recorder = self.store.as_ref().and_then(|path| {
            let run = NewRun {
                kind: "watch".into(),
                command,
                control_socket: socket.clone(),
                retain_days: Some(self.options.retain_days),
                labels: labels.clone(),
                job_key: Some(job_key.clone()),
                shadow: self.options.shadow,
            };
            match Recorder::start(path, &run) {
                Ok(mut r) => {
                    r.set_min_sample_interval(SAMPLE_STORE_EVERY_S);
                    r.mode(if self.probe.is_some() {
                        "kernel"
                    } else {
                        "procfs"
                    });
                    Some(r)
                }
                Err(err) => {
                    say!("sentry watch: {name}: not recorded: {err}");
                    None
                }
            }
        });
        let now = Instant::now();
        let job_control = Arc::new(JobControl::new(name.clone(), members, leader));
        let flags = Arc::new(JobFlags::default());
        let control_server = match (&socket, &recorder) {
            (Some(socket), Some(recorder)) => {
                let handler = JobHandler {
                    control: Arc::clone(&job_control),
                    flags: Arc::clone(&flags),
                    sink: recorder.sink(),
                    name: name.clone(),
                };
                match ControlServer::start(socket, move |action, actor| {
                    handler.handle(action, actor)
                }) {
                    Ok(server) => Some(server),
                    Err(err) => {
                        say!(
                            "sentry watch: {name}: the dashboard cannot control it: cannot listen on {}: {err}",
                            socket.display()
                        );
                        None
                    }
                }
            }
            _ => None,
        };
        let notify_ref = JobRef {
            run_id: recorder.as_ref().map(Recorder::run_id),
            labels: labels.clone(),
            command: command_for_notify,
        };
        let baseline = self.store.as_ref().and_then(|path| {
            crate::baseline::lookup(path, &baseline_key, &self.options.policy.regression)
        });
        let job = Job {
            notify_ref,
            keep: DecisionKeep::default(),
            cost: CostMeter::new(),
            cost_stored: now,
            regression: RegressionDetector::new(self.options.policy.regression.clone(), baseline),
            key: key.clone(),
            name: name.clone(),
            labels,
            control: job_control,
            cgroup,
            tracked: BTreeSet::new(),
            watch: Watch::new(self.options.policy.clone()),
            recorder,
            meter: Meter::default(),
            analysis: AnalysisBudget::new(),
            started: now,
            start_ns: kernel::monotonic_ns(),
            last_cpu: (0, now),
            cpu_peak: 0.0,
            mem_peak: None,
            pids_peak: 0,
            captured: 0,
            bytes: 0,
            not_output: 0,
            shed: 0,
            lost: 0,
            incidents: Vec::new(),
            flags,
            _control_server: control_server,
            uncaptured: None,
        };
        if !self.options.quiet {
            let run = job
                .recorder
                .as_ref()
                .map_or(String::new(), |r| format!(", run #{}", r.run_id()));
            say!("sentry watch: job {name} started{run}");
        }
        self.jobs.insert(id, job);
        self.by_key.insert(key, id);
        self.summary.jobs += 1;
        id
    }

    fn start_cgroup_job(&mut self, t: CgroupTarget) {
        let rel = t
            .path
            .strip_prefix(&self.root)
            .map(|r| format!("/{}", r.display()))
            .unwrap_or_else(|_| t.path.display().to_string());
        let key = format!("cgroup:{rel}");
        if self.by_key.contains_key(&key) {
            return;
        }
        let mut labels = BTreeMap::new();
        labels.insert("ci".to_string(), "cgroup".to_string());
        labels.insert("job".to_string(), t.name.clone());
        labels.insert("cgroup".to_string(), rel.clone());
        let members = Members::Cgroup(t.path.clone());
        let leader = members.pids().first().copied().unwrap_or(0);
        let id = self.new_job(JobSpec {
            key: key.clone(),
            name: t.name.clone(),
            labels,
            members,
            cgroup: Some(t.path.clone()),
            leader,
            job_key: key,
            command: vec![format!("cgroup {rel}")],
        });
        let ids: BTreeSet<u64> = cgroup::subtree(&t.path)
            .iter()
            .filter_map(|p| cgroup::id_of(p).ok())
            .collect();
        self.set_tracked(id, ids);
    }

    fn start_ci_job(&mut self, job: super::ci::CiJob) {
        let key = discover::key_of(&job);
        if self.by_key.contains_key(&key) {
            return;
        }
        let marker = match job.ci {
            "github" => "RUNNER_TRACKING_ID",
            "gitlab" => "CI_JOB_ID",
            "buildkite" => "BUILDKITE_JOB_ID",
            _ => "BUILD_TAG",
        };
        let entry = format!("{marker}={}", job.id).into_bytes();
        let pids = self
            .ci
            .as_ref()
            .map(|ci| ci.pids_of(&key))
            .unwrap_or_default();
        let leader = pids.first().copied().unwrap_or(0);
        let command = leader_command(leader);
        let mut labels = job.labels.clone();
        labels.insert("job_id".to_string(), job.id.clone());
        let name = format!(
            "{} {}",
            job.ci,
            [
                labels.get("repository"),
                labels.get("workflow"),
                labels.get("job"),
            ]
            .into_iter()
            .flatten()
            .cloned()
            .collect::<Vec<_>>()
            .join("/")
        );
        let name = if name.trim().len() <= job.ci.len() {
            format!("{} job {}", job.ci, job.id)
        } else {
            name
        };
        let id = self.new_job(JobSpec {
            key,
            name,
            labels,
            members: Members::Env(entry),
            cgroup: None,
            leader,
            job_key: job.job_key(),
            command,
        });
        for pid in pids {
            self.pid_job.insert(pid, id);
        }
    }

    fn sample_all(&mut self) {
        let ids: Vec<u32> = self.jobs.keys().copied().collect();
        for id in ids {
            self.sample_job(id);
        }
        self.publish();
    }

    /// Write records lost to a full ring buffer so far, in every cgroup ever tracked.
    fn ring_lost(&self) -> u64 {
        self.lost_untracked
            + self.probe.as_ref().map_or(0, |p| {
                self.tracked
                    .keys()
                    .map(|&cg| p.counters(cg).ring_full)
                    .sum()
            })
    }

    /// Updates the figures `/metrics` reads from this process.
    fn publish(&self) {
        let live = &self.options.live;
        let lost = self.ring_lost();
        let shed: u64 = self.shed_ended + self.jobs.values().map(|j| j.shed).sum::<u64>();
        live.jobs.store(self.jobs.len() as u64, Ordering::Relaxed);
        live.tracked_cgroups
            .store(self.tracked.len() as u64, Ordering::Relaxed);
        live.ring_lost.store(lost, Ordering::Relaxed);
        live.unattributed
            .store(self.unattributed, Ordering::Relaxed);
        live.shed.store(shed, Ordering::Relaxed);
        live.capturing
            .store(u64::from(self.probe.is_some()), Ordering::Relaxed);
    }

    fn sample_job(&mut self, id: u32) {
        let pids = {
            let Some(job) = self.jobs.get(&id) else {
                return;
            };
            match (&job.cgroup, &self.ci) {
                (Some(path), _) => cgroup::pids_in_subtree(path),
                (None, Some(ci)) => ci.pids_of(&job.key),
                (None, None) => Vec::new(),
            }
        };
        let action = self.options.action;
        let shadow = self.options.shadow;
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let reading = job.meter.read(&pids);
        let (cpu_us, mem, pressure) = match &job.cgroup {
            Some(path) => {
                let stats = cgroup::stats_at(path);
                let cpu = if stats.cpu_usage_us > 0 {
                    stats.cpu_usage_us
                } else {
                    reading.cpu_us
                };
                (
                    cpu,
                    stats.mem_bytes.or(Some(reading.rss_bytes)),
                    stats.cpu_pressure_some_avg10,
                )
            }
            None => (reading.cpu_us, Some(reading.rss_bytes), None),
        };
        let now = Instant::now();
        let (last_us, last_at) = job.last_cpu;
        let wall_us = now.duration_since(last_at).as_micros() as f64;
        // The first reading has no interval behind it (the job ran before sentry looked).
        let cpu_pct = if last_us == 0 || wall_us <= 0.0 {
            0.0
        } else {
            cpu_us.saturating_sub(last_us) as f64 / wall_us * 100.0
        };
        job.last_cpu = (cpu_us, now);
        job.cpu_peak = job.cpu_peak.max(cpu_pct);
        if let Some(m) = mem {
            job.mem_peak = Some(job.mem_peak.map_or(m, |p| p.max(m)));
        }
        job.pids_peak = job.pids_peak.max(reading.pids);
        let sample = Sample {
            at: job.started.elapsed(),
            cpu_pct,
            cpu_usage_us: cpu_us,
            cpu_pressure_some_avg10: pressure,
            mem_bytes: mem,
            pids: reading.pids,
            io_read_bytes: Some(reading.read_bytes),
            io_write_bytes: Some(reading.write_bytes),
            syscalls: None,
            writes: job.captured,
            write_bytes: job.bytes,
        };
        let lines = job.watch.lines();
        job.cost.observe(&sample, lines);
        if let Some(r) = job.recorder.as_mut() {
            r.sample(&sample, lines);
            if job.cost_stored.elapsed() >= COST_STORE_EVERY {
                job.cost_stored = Instant::now();
                r.cost(
                    &job.cost
                        .cost(job.started.elapsed())
                        .priced(self.options.price_per_cpu_hour),
                );
            }
        }
        if job.flags.stopped() || reading.pids == 0 {
            return;
        }
        let regressed = job.regression.observe(&sample, job.started.elapsed());
        let escalation = job.watch.sample_with(&sample, regressed);
        if let Some(d) = job.watch.last_decision() {
            if let Some(r) = job.recorder.as_mut() {
                r.decision(d, 1);
            }
            if let Some(n) = self.notifier.as_ref() {
                if job.keep.keep(d) {
                    for finding in d.findings.iter().filter(|f| crate::store::is_signal(f)) {
                        n.send(NotifyEvent::Finding {
                            job: job.notify_ref.clone(),
                            finding: finding.clone(),
                            t_s: finding.at.as_secs_f64(),
                        });
                    }
                    n.send(NotifyEvent::Decision {
                        job: job.notify_ref.clone(),
                        decision: d.clone(),
                    });
                }
            }
        }
        let Some(esc) = escalation else {
            return;
        };
        let incident = carry_out(job, &esc, action, shadow);
        if let Some(r) = &job.recorder {
            r.incident(&incident);
        }
        if let Some(n) = self.notifier.as_ref() {
            n.send(NotifyEvent::Incident {
                job: job.notify_ref.clone(),
                incident: incident.clone(),
            });
        }
        job.incidents.push(incident);
        self.summary.incidents += 1;
        if job.flags.stopped() {
            self.summary.stopped += 1;
        }
    }

    fn end_job(&mut self, id: u32, status: &str) {
        let Some(mut job) = self.jobs.remove(&id) else {
            return;
        };
        self.by_key.remove(&job.key);
        self.pid_job.retain(|_, j| *j != id);
        if let Some(probe) = self.probe.as_ref() {
            if job.cgroup.is_some() {
                job.lost = job
                    .tracked
                    .iter()
                    .map(|&cg| probe.counters(cg).ring_full)
                    .sum();
            }
        }
        for cg in std::mem::take(&mut job.tracked) {
            if self.owner.get(&cg) == Some(&id) {
                self.owner.remove(&cg);
            }
            self.release(cg);
        }
        job.watch.finish();
        if status == "exited" {
            job.control.set_ended();
        }
        let status = if job.flags.stopped() {
            "stopped"
        } else {
            status
        };
        let duration = job.started.elapsed().as_secs_f64();
        let cpu_seconds = job.last_cpu.0 as f64 / 1e6;
        job.cost.cpu_at_least(job.last_cpu.0);
        let cost = job
            .cost
            .cost(job.started.elapsed())
            .priced(self.options.price_per_cpu_hour);
        let baseline = job.regression.baseline().map(|b| {
            crate::baseline::BaselineComparison::of(b.clone(), duration, cost.cpu_seconds)
        });
        if !self.options.quiet {
            say!(
                "sentry watch: job {} {status} after {duration:.1} s ({} incident(s), CPU peak {:.0}%)",
                job.name,
                job.incidents.len(),
                job.cpu_peak
            );
        }
        let report = serde_json::json!({
            "kind": "watch",
            "name": job.name,
            "labels": job.labels,
            "status": status,
            "runaway": !job.incidents.is_empty(),
            "incidents": job.incidents,
            "duration_s": duration,
            "cpu_seconds": cpu_seconds,
            "cpu_peak_pct": job.cpu_peak,
            "mem_peak_bytes": job.mem_peak,
            "pids_peak": job.pids_peak,
            "events_captured": job.captured,
            "bytes_captured": job.bytes,
            "writes_not_output": job.not_output,
            "chunks_shed": job.shed,
            "events_lost": job.lost,
            "output_captured": job.uncaptured.is_none() && self.probe.is_some(),
            "output_not_captured_because": job.uncaptured,
            "cost": cost,
            "baseline": baseline,
        });
        self.summary.events_lost += job.lost;
        self.shed_ended += job.shed;
        if let Some(n) = self.notifier.as_ref() {
            n.send(NotifyEvent::Ended {
                job: job.notify_ref.clone(),
                status: status.to_string(),
                exit_code: None,
                runaway: !job.incidents.is_empty(),
            });
        }
        if let Some(recorder) = job.recorder.take() {
            let end = WatchedEnd {
                status: status.to_string(),
                runaway: !job.incidents.is_empty(),
                cpu_peak_pct: job.cpu_peak,
                mem_peak_bytes: job.mem_peak,
                events_captured: job.captured,
                events_lost: job.lost,
                cpu_seconds,
                cost: Some(cost),
                report,
            };
            let name = job.name.clone();
            // The store may be slow; the loop must not wait for it.
            self.finishing.push(std::thread::spawn(move || {
                if let Err(problem) = recorder.finish_watched(end) {
                    say!("sentry watch: {name}: {problem}");
                }
            }));
        }
    }

    /// Writes the metrics exposition for node_exporter's textfile collector.
    fn write_textfile(&mut self) {
        let (Some(dir), Some(db)) = (&self.options.textfile_dir, &self.store) else {
            return;
        };
        self.publish();
        let text = crate::store::Store::open(db)
            .and_then(|s| s.metrics())
            .map(|m| crate::metrics::render(&m, Some(self.options.live.as_ref())));
        let written = match text {
            Ok(text) => crate::metrics::write_textfile(dir, &text).map_err(|e| e.to_string()),
            Err(err) => Err(err.to_string()),
        };
        match written {
            Ok(()) => self.textfile_error = false,
            Err(err) if !self.textfile_error => {
                self.textfile_error = true;
                say!(
                    "sentry watch: cannot write {}/sentry.prom: {err}",
                    dir.display()
                );
            }
            Err(_) => {}
        }
    }

    fn finish(mut self) -> WatchSummary {
        let ids: Vec<u32> = self.jobs.keys().copied().collect();
        for id in ids {
            self.end_job(id, "detached");
        }
        self.publish();
        self.summary.events_lost = self.ring_lost();
        for handle in self.finishing.drain(..) {
            let _ = handle.join();
        }
        if let Some(n) = self.notifier.take() {
            n.finish(crate::notify::RUN_FINISH_WAIT);
        }
        // The last figures, with every job's end recorded.
        self.write_textfile();
        if self.unattributed > 0 {
            tracing::debug!("{} writes belonged to no watched job", self.unattributed);
        }
        self.summary.clone()
    }
}

/// Where jobs are recorded, if anywhere.
fn store_path(options: &WatchOptions) -> Option<PathBuf> {
    match &options.store {
        StoreChoice::Off => None,
        StoreChoice::Path(p) => Some(p.clone()),
        StoreChoice::Default => crate::store::default_path().ok(),
    }
}

/// The command line of `pid`, for the record of a discovered job.
fn leader_command(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
        })
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| vec![format!("pid {pid}")])
}

/// Carries out an escalation on a watched job within what `--action` allows; in shadow mode
/// only records what that would have been.
fn carry_out(job: &mut Job, esc: &Escalation, allowed: WatchAction, shadow: bool) -> Incident {
    let at = esc.decision.at.as_secs_f64();
    let what = esc.headline();
    let strong = matches!(esc.action, Action::Kill | Action::Restart | Action::Pause);
    if shadow {
        return shadow_incident(job, esc, allowed, strong);
    }
    let control: Arc<dyn TreeControl> = job.control.clone();
    let (taken, outcome) = match (strong, allowed, esc.action) {
        (false, _, _) | (true, WatchAction::Alert, _) => {
            let outcome = if strong {
                format!(
                    "alerted; the policy called for {} but sentry watch only alerts unless \
                     given --action kill or --action pause",
                    esc.action.as_str()
                )
            } else {
                "alerted; the job was left running".to_string()
            };
            say!("sentry watch: {}: alert after {at:.1} s: {what}", job.name);
            (Action::Alert, outcome)
        }
        (true, WatchAction::Pause, _) | (true, WatchAction::Kill, Action::Pause) => {
            match act::pause(&control) {
                Ok(()) => {
                    job.flags.paused.store(true, Ordering::SeqCst);
                    say!(
                        "sentry watch: {}: paused (SIGSTOP to its processes) after {at:.1} s: {what}",
                        job.name
                    );
                    (Action::Pause, "paused".to_string())
                }
                Err(err) => (
                    Action::Alert,
                    format!("pause failed ({err}); alerted instead"),
                ),
            }
        }
        (true, WatchAction::Kill, _) => {
            say!(
                "sentry watch: {}: stopping its processes after {at:.1} s: {what}",
                job.name
            );
            act::stop(&control, act::STOP_GRACE);
            job.flags.stopped.store(true, Ordering::SeqCst);
            (Action::Kill, "stopped".to_string())
        }
    };
    esc.incident(taken, outcome, 1)
}

/// What `carry_out` would have done under `--action`, recorded as a shadow incident; the
/// job's processes are not signalled.
fn shadow_incident(job: &Job, esc: &Escalation, allowed: WatchAction, strong: bool) -> Incident {
    let at = esc.decision.at.as_secs_f64();
    let what = esc.headline();
    let would = match (strong, allowed, esc.action) {
        (false, _, _) | (true, WatchAction::Alert, _) => Action::Alert,
        (true, WatchAction::Pause, _) | (true, WatchAction::Kill, Action::Pause) => Action::Pause,
        (true, WatchAction::Kill, _) => Action::Kill,
    };
    let outcome = match would {
        Action::Pause => {
            say!(
                "sentry watch (shadow): {}: would have paused it after {at:.1} s: {what}",
                job.name
            );
            format!("shadow: would have paused the job after {at:.1} s; nothing was done")
        }
        Action::Kill => {
            say!(
                "sentry watch (shadow): {}: would have killed it after {at:.1} s: {what}",
                job.name
            );
            format!("shadow: would have stopped the job after {at:.1} s; nothing was done")
        }
        _ => {
            say!(
                "sentry watch (shadow): {}: alert after {at:.1} s: {what}",
                job.name
            );
            "shadow: alerted; the job was left running".to_string()
        }
    };
    let mut incident = esc.incident(would, outcome, 1);
    incident.shadow = true;
    incident
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup_id_is_read_from_the_record_header() {
        let header = sentry_common::WriteHeader {
            cgroup_id: 0xdead_beef_1234,
            tgid: 7,
            ..Default::default()
        };
        // SAFETY: WriteHeader is plain #[repr(C)] integers.
        let bytes: &[u8] = unsafe {
            std::slice::from_raw_parts(
                (&header as *const sentry_common::WriteHeader).cast(),
                std::mem::size_of::<sentry_common::WriteHeader>(),
            )
        };
        let record = kernel::Record::parse(bytes).expect("a whole header");
        assert_eq!(record.header.cgroup_id, 0xdead_beef_1234);
        assert!(kernel::Record::parse(&bytes[..4]).is_none());
    }
}
