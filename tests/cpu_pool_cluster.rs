//! The CPU pool inside real worker processes: its counters reach the primary, and heavy work
//! on it leaves the worker's event loop free.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_counters_reach_the_primary_in_heartbeats() {
    let config = config(1).cpu_threads(Some(2)).heartbeat_interval(Duration::from_millis(50));
    let (cluster, mut events) = spawn(config).await;
    events.all_ready(1).await;
    for _ in 0..3 {
        cluster.send_to(0, TestCmd::Pool(5)).await.expect("send");
    }
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let status = cluster.status().await.expect("status");
        if let Some(pool) = status[0].stats.and_then(|s| s.pool)
            && pool.done >= 3
        {
            assert_eq!(pool.threads, 2);
            assert_eq!((pool.panicked, pool.rejected), (0, 0));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "pool counters never arrived: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_loop_answers_while_the_pool_is_saturated() {
    let (mut primary, addr) = start_http_cluster(&["--workers", "1"]).await;
    // More heavy requests than pool threads: the pool is busy for seconds.
    let heavy: Vec<_> = (0..6).map(|_| tokio::spawn(http_get(addr, "/heavy?ms=1500"))).collect();
    // Sample `/` every 100 ms for a second, all while the pool works through ≈ 4.5 s of
    // heavy tasks. A heavy request run on the event loop would hold `/` back by ≥ 1.5 s.
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    for _ in 0..10 {
        pace.tick().await;
        let started = tokio::time::Instant::now();
        let (status, body) = http_get(addr, "/").await.expect("GET /");
        let took = started.elapsed();
        assert_eq!(status, 200, "{body}");
        assert!(took < Duration::from_millis(700), "GET / took {took:?} while the pool was saturated");
    }
    for request in heavy {
        assert_eq!(request.await.expect("task").expect("heavy").0, 200);
    }
    primary.start_kill().ok();
}
