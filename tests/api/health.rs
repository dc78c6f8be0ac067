//! Health probes answer without a token.

use rocket::http::{Method, Status};
use serde_json::json;

use crate::helpers::on_both_databases;

on_both_databases! {
    async fn health_reports_process_database_and_version(app) {
        let response = app.request(Method::Get, "/health", None, None).await;
        assert_eq!(response.status, Status::Ok);
        assert_eq!(response.json(), json!({"status": "ok", "database": "ok", "version": env!("CARGO_PKG_VERSION")}));
    }

    async fn liveness_and_readiness_probes_answer_200(app) {
        let live = app.request(Method::Get, "/health/live", None, None).await;
        assert_eq!(live.status, Status::Ok);
        assert_eq!(live.json()["status"], "ok");
        assert!(live.json().get("database").is_none(), "liveness does not touch the database");
        let ready = app.request(Method::Get, "/health/ready", None, None).await;
        assert_eq!(ready.status, Status::Ok);
        assert_eq!(ready.json()["database"], "ok");
    }
}
