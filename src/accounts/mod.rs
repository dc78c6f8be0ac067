//! Accounts: the service as Better Auth's email-and-password server
//! (`BETTER_AUTH_SERVER=on`), compatible both ways with a real Better Auth 1.7 server on
//! the same database and secret: its routes, bodies, errors and cookies on the wire; its
//! tables, ids, timestamps and scrypt hashes in the database.
//!
//! The sessions it issues are rows of Better Auth's `session` table, so they reach the
//! task routes the way any Better Auth session does: through `auth`'s session store (by
//! `Authorization: Bearer` or by cookie). Nothing here reaches into `auth`.
//!
//! Invariants: a password is hashed only on the bounded pool ([`password::Hasher`]); a
//! sign-in for an unknown email costs the same hash as a wrong password and gets the same
//! answer; the sign-in limits are counted in the database, so they hold across
//! instances; a user is deleted with all their data in one transaction when both live in
//! one database.

mod cookies;
mod ids;
mod limits;
pub mod password;
mod reply;
mod routes;
mod schema;
mod stamp;
mod store;

use std::time::Duration;

use rocket::fairing::AdHoc;
use rocket::{Build, Rocket};
use secrecy::ExposeSecret as _;

pub use routes::{is_email, AccountsApi};

use crate::db::{AppPool, DatabaseConfig};

/// Connections the accounts routes may hold on Better Auth's database, when it is another.
const POOL_SIZE: u32 = 8;
/// Longest wait for one of them.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// How often expired limit counters are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The module's state.
pub struct Accounts {
    store: store::Store,
    jar: cookies::CookieJar,
    hasher: password::Hasher,
    trusted_origins: Vec<String>,
    attempts_per_address: u32,
    failures_per_account: u32,
    client_ip_header: Option<String>,
    /// The service's own database, for a user's data when Better Auth's is another one.
    tasks_db: Option<AppPool>,
}

impl Accounts {
    /// Deletes the user, their sessions and accounts and, in the same transaction when
    /// the databases are one, their tasks, events and idempotency keys; then ends their
    /// event streams here.
    async fn delete_user(
        &self,
        user_id: &str,
        streams: Option<&crate::events::Bus>,
    ) -> Result<(), sqlx::Error> {
        if self.store.shares_tasks_database {
            self.store
                .delete_user(user_id, crate::tasks::erase_user(self.store.pool.backend()))
                .await?;
        } else {
            // Two databases cannot share a transaction: the data goes first, so a failure
            // in between leaves a user without tasks, never tasks without a user.
            if let Some(db) = &self.tasks_db {
                crate::db::on_pool!(db, |p| {
                    let mut tx = p.begin().await?;
                    for sql in crate::tasks::erase_user(db.backend()) {
                        sqlx::query(sql).bind(user_id).execute(&mut *tx).await?;
                    }
                    tx.commit().await
                })?;
            }
            self.store.delete_user(user_id, &[]).await?;
        }
        if let Some(bus) = streams {
            bus.end_user(user_id);
        }
        tracing::info!(user = %user_id, "accounts: a user and their data were deleted");
        Ok(())
    }
}

/// Creates Better Auth's tables where absent (the `migrate` command): on `own`, the
/// service's pool, unless `BETTER_AUTH_DATABASE_URL` names another database.
pub async fn migrate(config: &crate::config::AppConfig, own: &AppPool) -> Result<(), String> {
    let Some(accounts) = &config.accounts else {
        return Ok(());
    };
    let failed = |e: sqlx::Error| format!("creating Better Auth's tables: {e}");
    let Some(url) = &accounts.database_url else {
        return schema::ensure(own).await.map_err(failed);
    };
    let pool = open_other(url).await?;
    let done = schema::ensure(&pool).await.map_err(failed);
    crate::db::on_pool!(&pool, |p| p.close().await);
    done
}

/// A small pool on Better Auth's database when it is not the service's own (the service's
/// pool serves it otherwise).
async fn open_other(url: &secrecy::SecretString) -> Result<AppPool, String> {
    const SETTING: &str = "BETTER_AUTH_DATABASE_URL";
    let settings =
        DatabaseConfig::other(url, SETTING, POOL_SIZE, ACQUIRE_TIMEOUT).map_err(|e| e.0)?;
    AppPool::open(&settings, SETTING)
        .await
        .map_err(|e| format!("{SETTING}: {e}"))
}

/// The accounts module: attached always, active with `BETTER_AUTH_SERVER=on`. Its work
/// runs once the service's pool exists and the migrations ran (they are attached the same
/// way, earlier), so Better Auth's tables can share that pool.
pub fn stage() -> AdHoc {
    AdHoc::on_ignite("Accounts", |rocket| async {
        rocket.attach(AdHoc::try_on_ignite("Accounts setup", set_up))
    })
}

async fn set_up(rocket: Rocket<Build>) -> Result<Rocket<Build>, Rocket<Build>> {
    let Some(config) = crate::config::of(&rocket, "accounts") else {
        return Err(rocket);
    };
    let Some(settings) = config.accounts.clone() else {
        return Ok(rocket);
    };
    let config = config.clone();
    let own = rocket.state::<crate::db::Db>().map(|db| (**db).clone());
    let pool = match (&settings.database_url, &own) {
        (Some(url), _) => open_other(url).await,
        (None, Some(own)) => Ok(own.clone()),
        (None, None) => Err("the database stage is not attached".to_owned()),
    };
    let pool = match pool {
        Ok(pool) => pool,
        Err(error) => {
            tracing::error!(%error, "accounts: Better Auth's database cannot be opened");
            return Err(rocket);
        }
    };
    if config.migrate_on_start {
        let created = tokio::time::timeout(Duration::from_secs(30), schema::ensure(&pool)).await;
        match created {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::error!(%error, "accounts: Better Auth's tables cannot be created");
                return Err(rocket);
            }
            Err(_) => {
                tracing::error!("accounts: Better Auth's database did not answer within 30 s");
                return Err(rocket);
            }
        }
    }
    let issuer_column = schema::has_issuer_column(&pool).await.unwrap_or(false);
    let Some(secret) = config.auth.secret.as_ref() else {
        tracing::error!("accounts: BETTER_AUTH_SERVER=on needs BETTER_AUTH_SECRET");
        return Err(rocket);
    };
    let prefix = config
        .auth
        .cookie_prefix
        .clone()
        .unwrap_or_else(|| "better-auth".to_owned());
    let jar = match cookies::CookieJar::new(secret.expose_secret(), &prefix) {
        Ok(jar) => jar,
        Err(error) => {
            tracing::error!(%error, "accounts: the cookies cannot be signed");
            return Err(rocket);
        }
    };
    let shares = settings.database_url.is_none();
    let hasher = match password::Hasher::new(settings.hashes_at_once) {
        Ok(hasher) => hasher,
        Err(error) => {
            tracing::error!(%error, "accounts: passwords cannot be hashed");
            return Err(rocket);
        }
    };
    tracing::info!(
        hashes_at_once = hasher.at_once(),
        attempts_per_address = settings.attempts_per_address,
        failures_per_account = settings.failures_per_account,
        client_ip_header = settings.client_ip_header.as_deref().unwrap_or("-"),
        "accounts: Better Auth's email-and-password server is on under /api/auth"
    );
    if settings.client_ip_header.is_none() {
        tracing::info!("accounts: clients are told apart by their connection's address; behind a proxy, set CLIENT_IP_HEADER");
    }
    let prune_pool = pool.clone();
    let accounts = Accounts {
        store: store::Store {
            pool,
            issuer_column,
            shares_tasks_database: shares,
        },
        jar,
        hasher,
        trusted_origins: config.allowed_origins.clone(),
        attempts_per_address: settings.attempts_per_address,
        failures_per_account: settings.failures_per_account,
        client_ip_header: settings.client_ip_header.clone(),
        tasks_db: own,
    };
    Ok(rocket
        .manage(accounts)
        // `/api/v1/auth/…` reaches these too: the compatibility names map `/api/v1/` onto
        // `/api/` before routing.
        .mount("/api/auth", crate::telemetry::traced(routes::routes()))
        .attach(AdHoc::on_liftoff("Sign-in limits' pruning", move |rocket| {
            Box::pin(async move {
                let shutdown = rocket.shutdown();
                tokio::spawn(crate::periodic::every(PRUNE_EVERY, shutdown, move || {
                    let pool = prune_pool.clone();
                    async move {
                        let before = crate::time::now().timestamp_millis() - limits::ACCOUNT_WINDOW_MS;
                        if let Err(error) = schema::prune_limits(&pool, before).await {
                            tracing::debug!(%error, "accounts: expired limit counters not pruned this round");
                        }
                    }
                }));
            })
        })))
}
