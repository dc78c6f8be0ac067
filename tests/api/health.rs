//! Health probes answer without a token.

use rocket::http::Status;
use serde_json::json;

use crate::helpers::{on_both_backends, on_both_databases, LiveServer};

on_both_databases! {
    async fn health_reports_process_database_and_version(app) {
        let response = app.anonymous().get("/health").await;
        assert_eq!(response.status, Status::Ok);
        assert_eq!(response.json(), json!({"status": "ok", "database": "ok", "version": env!("CARGO_PKG_VERSION")}));
    }

    async fn liveness_and_readiness_probes_answer_200(app) {
        let live = app.anonymous().get("/health/live").await;
        assert_eq!(live.status, Status::Ok);
        assert_eq!(live.json()["status"], "ok");
        assert!(live.json().get("database").is_none(), "liveness does not touch the database");
        let ready = app.anonymous().get("/health/ready").await;
        assert_eq!(ready.status, Status::Ok);
        assert_eq!(ready.json()["database"], "ok");
    }
}

on_both_backends! {
    async fn the_healthcheck_command_probes_the_running_service(backend) {
        let server = LiveServer::start(backend, |f| f).await;
        let probe = |port: u16| {
            std::process::Command::new(env!("CARGO_BIN_EXE_todo-api"))
                .env_clear()
                .env("PORT", port.to_string())
                .arg("healthcheck")
                .output()
                .unwrap()
        };
        let port = server.port;
        let healthy = tokio::task::spawn_blocking(move || probe(port)).await.unwrap();
        assert!(healthy.status.success(), "{}", String::from_utf8_lossy(&healthy.stderr));
        server.stop().await;
        let gone = tokio::task::spawn_blocking(move || probe(port)).await.unwrap();
        assert!(!gone.status.success(), "a stopped service is unhealthy");
    }
}
