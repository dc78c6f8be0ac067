//! What runs once against the database before the service serves: the migrations, then each
//! module's own start-up work (the tasks' search columns). The `migrate` command and the
//! server run the same [`prepare`].

use rocket::fairing::AdHoc;
use rocket::{Build, Rocket};

use crate::db::{AppPool, DatabaseConfig, Db, DbError};

/// Applies the migrations, then each module's start-up work.
pub async fn prepare(pool: &AppPool, settings: &DatabaseConfig) -> Result<(), DbError> {
    pool.migrate(settings).await?;
    tracing::info!(backend = ?pool.backend(), "database migrations applied");
    crate::tasks::start_up(pool)
        .await
        .map_err(|source| DbError::Sqlx {
            context: "filling in the search columns",
            source,
        })
}

async fn prepare_stage(rocket: Rocket<Build>) -> Result<Rocket<Build>, Rocket<Build>> {
    let Some(config) = crate::config::of(&rocket, "start-up") else {
        return Err(rocket);
    };
    if !config.migrate_on_start {
        return Ok(rocket);
    }
    let Some(db) = rocket.state::<Db>() else {
        // The database fairing failed and said why (or was never attached, and the launch
        // fails naming this stage).
        return Err(rocket);
    };
    match prepare(db, &config.database).await {
        Ok(()) => Ok(rocket),
        Err(error) => {
            tracing::error!(%error, "preparing the database failed");
            Err(rocket)
        }
    }
}

/// The start-up module: prepares the database (unless `MIGRATE_ON_START=false`) once the
/// pool exists, before the feature modules' own ignite work.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Start-up", |rocket| async {
        rocket.attach(AdHoc::try_on_ignite("Database preparation", prepare_stage))
    })
}
