//! End-to-end tests of the `filemanager` binary's service and CLI, over real TCP sockets.
//!
//! Each behaviour of the HTTP contract is one async function taking a running [`Server`];
//! [`suite!`] runs every one of them against local disk and against S3 (Garage in
//! `scripts/test.sh`). S3 tests fail without S3 settings unless `FM_SKIP_S3=1`.

mod auth;
mod cli;
mod common;
mod files;
mod ops;
mod presign;
mod zero_config;

use common::{Backend, Options, Server};

macro_rules! suite {
    ($backend:ident, $kind:expr) => {
        mod $backend {
            use super::*;

            suite!(@tests $kind;
                files::upload_returns_the_file_object,
                files::download_gives_original_bytes_and_headers,
                files::utf8_metadata_round_trips,
                files::chunked_uploads_stream_both_ways,
                files::head_gives_the_headers_only,
                files::ranges,
                files::if_none_match_gives_304,
                files::delete_then_404,
                files::metadata_route_gives_the_file_object,
                files::overwrite_replaces_the_content,
                files::list_pages_prefixes_and_isolation,
                files::query_switches,
                files::x_cache_reports_hits_and_never_stale_bytes,
                files::large_files_are_read_from_storage_once,
                files::metadata_header_rules,
                files::location_rules,
                files::error_messages_reveal_no_paths,
                auth::auth_matrix,
                auth::open_routes_need_no_token,
                presign::upload_and_download_urls_work_without_a_token,
                presign::changed_urls_are_refused,
                presign::direct_urls_go_straight_to_the_bucket,
                presign::urls_only_allow_their_method,
                presign::upload_urls_enforce_content_type_and_size,
                presign::expired_urls_are_refused,
                presign::url_requests_are_validated,
                ops::health_metrics_and_openapi,
                ops::unknown_routes_answer_json,
            );

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn upload_limit_content_length() {
                let opts = Options { max_upload: Some(1000), ..Options::default() };
                if let Some(s) = Server::start_with($kind, opts).await {
                    files::upload_limit_content_length(&s).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn upload_limit_chunked() {
                let opts = Options { max_upload: Some(1000), ..Options::default() };
                if let Some(s) = Server::start_with($kind, opts).await {
                    files::upload_limit_chunked(&s).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn unknown_domains() {
                let opts = Options { only_domains: Some(vec!["other".into()]), ..Options::default() };
                if let Some(s) = Server::start_with($kind, opts).await {
                    files::unknown_domains(&s).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cors() {
                let opts = Options { cors: vec!["https://app.example".into()], ..Options::default() };
                if let Some(s) = Server::start_with($kind, opts).await {
                    ops::cors(&s).await;
                }
            }
        }
    };
    (@tests $kind:expr; $($module:ident :: $test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                if let Some(s) = Server::start($kind).await {
                    $module::$test(&s).await;
                }
            }
        )*
    };
}

suite!(local, Backend::Local);
suite!(s3, Backend::S3);

/// Local disk only: the test changes the stored bytes in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_files_are_never_served() {
    let s = Server::start(Backend::Local).await.unwrap();
    files::damaged_files_are_never_served(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_requests_finish() {
    let s = Server::start(Backend::Local).await.unwrap();
    ops::shutdown_lets_requests_finish(s).await;
}
