//! Nothing is left running after a discovery, whatever path it took: the fetcher spawns no
//! task of its own, and the resolver's are gone once the fetcher is dropped.

use std::time::Duration;

use mtasts_test_support::{Fixture, PolicyResponse, init_tracing};

use crate::{DOMAIN, ENFORCE, domain};

#[test]
fn error_paths_leave_no_task_behind() {
    init_tracing();
    // The servers run on their own runtime, so the client runtime counts only its tasks.
    let servers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("server runtime");
    let fixture: Fixture = servers.block_on(Fixture::start());
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let responses = [
        PolicyResponse::policy(ENFORCE),
        PolicyResponse::status(404),
        PolicyResponse::policy(ENFORCE).untrusted_cert(),
        PolicyResponse::policy("x".repeat(100_000)).chunked(),
        PolicyResponse::policy(ENFORCE).abort_after(10),
        PolicyResponse::policy(ENFORCE).stall_after(10),
    ];
    fixture.publish_txt(DOMAIN, "1");
    client.block_on(async {
        let fetcher = fixture
            .fetcher_builder()
            .timeout(Duration::from_millis(500))
            .build()
            .expect("fetcher");
        for response in responses {
            fixture.serve(DOMAIN, response);
            let _ = fetcher.discover(&domain(DOMAIN), None).await;
        }
        drop(fetcher);
    });
    // Let the resolver's background tasks see that their handles are gone.
    let metrics = client.metrics();
    let mut alive = metrics.num_alive_tasks();
    for _ in 0..1000 {
        if alive == 0 {
            break;
        }
        client.block_on(tokio::task::yield_now());
        alive = metrics.num_alive_tasks();
    }
    assert_eq!(alive, 0, "tasks left on the client runtime");
    assert_eq!(fixture.https().request_count("mta-sts.example.com"), 5);
}
