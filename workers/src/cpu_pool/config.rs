//! How a pool is set up: [`CpuPoolConfig`] and [`default_threads`], the pool size a cluster's
//! workers share the machine's cores by.

use std::num::NonZeroUsize;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::error::{CpuPoolConfigFault, CpuPoolError};

/// The number of pool threads each of `workers` worker processes gets by default: the cores
/// this process may use (`std::thread::available_parallelism`, which honours CPU affinity and
/// cgroup quotas) shared out among the workers, at least 1.
///
/// ```
/// use corral_workers::default_threads;
///
/// let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
/// assert_eq!(default_threads(1), cores);
/// assert_eq!(default_threads(cores * 8), 1);
/// assert!(default_threads(0) >= 1);
/// ```
pub fn default_threads(workers: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    (cores / workers.max(1)).max(1)
}

/// How a [`CpuPool`](crate::CpuPool) is set up.
///
/// ```
/// use corral_workers::CpuPoolConfig;
///
/// let config = CpuPoolConfig::for_workers(2).queue_capacity(256).thread_name("resize");
/// assert!(config.threads >= 1);
/// assert_eq!(config.queue_capacity, 256);
/// assert!(config.validate().is_ok());
/// assert!(CpuPoolConfig::default().threads(0).validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuPoolConfig {
    /// Number of pool threads: at most this many tasks run at once. Default:
    /// [`default_threads(1)`](default_threads), every core this process may use.
    pub threads: usize,
    /// Tasks that may wait for a thread; past that, [`CpuPoolHandle::run`](crate::CpuPoolHandle::run) waits for room
    /// and [`CpuPoolHandle::try_run`](crate::CpuPoolHandle::try_run) fails with [`CpuPoolError::Busy`]. Default: 1024.
    pub queue_capacity: usize,
    /// Prefix of the threads' names (`{prefix}-{index}`; Linux shows the first 15 bytes).
    /// Default: `corral-cpu`.
    pub thread_name: String,
    /// Stack size of each thread in bytes. Default: `None`, Rust's default (2 MiB unless
    /// `RUST_MIN_STACK` says otherwise).
    pub stack_size: Option<usize>,
    /// How long an awaited [`CpuTask`](crate::CpuTask) keeps its runtime awake (re-polling itself, between
    /// the event loop's other tasks) instead of parking until the pool thread wakes it, while
    /// the pool's recent tasks ran shorter than this and spinning kept paying off (see
    /// [`CpuPool`](crate::CpuPool)). Waking a parked runtime costs a few µs (an `eventfd` write and an
    /// inter-processor interrupt, more in a VM): for short tasks, spinning cuts the round trip
    /// to about a microsecond. `Duration::ZERO` turns it off. Default: 20 µs.
    pub spin: Duration,
}

impl Default for CpuPoolConfig {
    fn default() -> Self {
        CpuPoolConfig {
            threads: default_threads(1),
            queue_capacity: 1024,
            thread_name: "corral-cpu".to_string(),
            stack_size: None,
            spin: Duration::from_micros(20),
        }
    }
}

impl CpuPoolConfig {
    /// The default config with [`default_threads(workers)`](default_threads) threads: what
    /// each of a cluster's `workers` processes should use.
    ///
    /// ```
    /// let config = corral_workers::CpuPoolConfig::for_workers(1_000_000);
    /// assert_eq!(config.threads, 1);
    /// ```
    pub fn for_workers(workers: usize) -> Self {
        CpuPoolConfig { threads: default_threads(workers), ..CpuPoolConfig::default() }
    }

    /// Sets [`threads`](Self::threads).
    ///
    /// ```
    /// assert_eq!(corral_workers::CpuPoolConfig::default().threads(3).threads, 3);
    /// ```
    #[must_use]
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Sets [`queue_capacity`](Self::queue_capacity).
    ///
    /// ```
    /// assert_eq!(corral_workers::CpuPoolConfig::default().queue_capacity(8).queue_capacity, 8);
    /// ```
    #[must_use]
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// Sets [`thread_name`](Self::thread_name).
    ///
    /// ```
    /// assert_eq!(corral_workers::CpuPoolConfig::default().thread_name("img").thread_name, "img");
    /// ```
    #[must_use]
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.thread_name = prefix.into();
        self
    }

    /// Sets [`stack_size`](Self::stack_size).
    ///
    /// ```
    /// let config = corral_workers::CpuPoolConfig::default().stack_size(8 << 20);
    /// assert_eq!(config.stack_size, Some(8 << 20));
    /// ```
    #[must_use]
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Sets [`spin`](Self::spin).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let config = corral_workers::CpuPoolConfig::default().spin(Duration::ZERO);
    /// assert_eq!(config.spin, Duration::ZERO);
    /// ```
    #[must_use]
    pub fn spin(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }

    /// Checks the config: at least one thread and a queue of at least one place (a task
    /// waits in the queue before a thread takes it, so a queue of 0 could never take one).
    ///
    /// # Errors
    ///
    /// [`CpuPoolError::Config`], whose [`CpuPoolConfigFault`] names the wrong field.
    ///
    /// ```
    /// use corral_workers::{CpuPoolConfig, CpuPoolConfigFault, CpuPoolError};
    ///
    /// let err = CpuPoolConfig::default().queue_capacity(0).validate().unwrap_err();
    /// assert_eq!(err, CpuPoolError::Config(CpuPoolConfigFault::ZeroQueueCapacity));
    /// ```
    pub fn validate(&self) -> Result<(), CpuPoolError> {
        if self.threads == 0 {
            return Err(CpuPoolConfigFault::ZeroThreads.into());
        }
        if self.queue_capacity == 0 {
            return Err(CpuPoolConfigFault::ZeroQueueCapacity.into());
        }
        // The semaphore's limit; far beyond any sensible queue.
        if self.queue_capacity > Semaphore::MAX_PERMITS {
            let (capacity, max) = (self.queue_capacity, Semaphore::MAX_PERMITS);
            return Err(CpuPoolConfigFault::QueueCapacityTooLarge { capacity, max }.into());
        }
        Ok(())
    }
}
