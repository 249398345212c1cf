//! The archive's tables in PostgreSQL: one chain of records per namespace, written in a
//! transaction that holds the namespace's chain head, so two writers never fork a chain; a
//! record is stored once per archived object (its UID), however often it is written.

use hitl_engine::archive::chain::{self, Checkpoint, GENESIS};
use hitl_engine::archive::{Kind, Stored};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Row, Transaction, postgres::PgRow};

/// Versioned schema changes, applied in order at start; each runs once (`archive_schema`).
const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    "CREATE TABLE archive_records (
        namespace   text        NOT NULL,
        position    bigint      NOT NULL,
        kind        text        NOT NULL,
        uid         text        NOT NULL UNIQUE,
        recorded_at timestamptz NOT NULL DEFAULT now(),
        workflow    text,
        deciders    text[]      NOT NULL DEFAULT '{}',
        content     text        NOT NULL,
        prev_hash   text        NOT NULL,
        hash        text        NOT NULL,
        PRIMARY KEY (namespace, position)
    );
    CREATE INDEX archive_records_deciders ON archive_records USING gin (deciders);
    CREATE INDEX archive_records_recorded_at ON archive_records (recorded_at);
    CREATE TABLE archive_heads (
        namespace text   PRIMARY KEY,
        position  bigint NOT NULL,
        hash      text   NOT NULL
    );",
)];

/// A connection pool to the archive. Connections are made when needed, so the operator starts
/// and runs while the database is away; the schema is brought up to date before the first use.
#[derive(Clone)]
pub struct Archive {
    pool: PgPool,
    schema: std::sync::Arc<tokio::sync::OnceCell<()>>,
}

/// What to read back. `namespaces`: read whole; `own`: this user's decisions anywhere else;
/// `within`: only this namespace's records (a namespaced read, where `own` must not reach out).
#[derive(Debug, Default)]
pub struct Query {
    pub namespaces: Vec<String>,
    pub own: Option<String>,
    pub within: Option<String>,
    pub workflow: Option<String>,
    pub decided_by: Option<String>,
    pub since: Option<jiff::Timestamp>,
    pub limit: i64,
}

/// Whether `store` added the record or found it there already.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Added,
    AlreadyThere,
}

impl Archive {
    /// The archive at `url` (its `sslmode` and `sslrootcert` apply). Only the URL is checked
    /// here; the database is reached on first use.
    pub fn open(url: &str) -> Result<Self, sqlx::Error> {
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_lazy_with(options);
        Ok(Self { pool, schema: Default::default() })
    }

    /// Brings the schema up to date, once per process (tried again after a failure).
    pub async fn ready(&self) -> Result<(), sqlx::Error> {
        let pool = self.pool.clone();
        self.schema.get_or_try_init(move || migrate(pool)).await.map(|_| ())
    }

    /// Appends a record to its namespace's chain, unless one with this UID is stored.
    pub async fn store(&self, namespace: &str, kind: Kind, uid: &str, content: &str) -> Result<Outcome, sqlx::Error> {
        self.ready().await?;
        let tx = self.pool.begin().await?;
        let (tx, outcome) = append(tx, namespace, kind, uid, content).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// The namespaces that have records.
    pub async fn namespaces(&self) -> Result<Vec<String>, sqlx::Error> {
        self.ready().await?;
        sqlx::query_scalar("SELECT namespace FROM archive_heads ORDER BY namespace").fetch_all(&self.pool).await
    }

    /// Records matching `query`, oldest first within each namespace.
    pub async fn query(&self, query: &Query) -> Result<Vec<Stored>, sqlx::Error> {
        self.ready().await?;
        let rows = sqlx::query(
            "SELECT namespace, position, kind, uid, to_char(recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    content, prev_hash, hash
             FROM archive_records
             WHERE (namespace = ANY($1) OR ($2::text IS NOT NULL AND $2 = ANY(deciders)))
               AND ($3::text IS NULL OR workflow = $3)
               AND ($4::text IS NULL OR $4 = ANY(deciders))
               AND ($5::text IS NULL OR recorded_at >= $5::timestamptz)
               AND ($7::text IS NULL OR namespace = $7)
             ORDER BY namespace, position
             LIMIT $6",
        )
        .bind(&query.namespaces)
        .bind(query.own.as_deref())
        .bind(query.workflow.as_deref())
        .bind(query.decided_by.as_deref())
        .bind(query.since.map(|t| t.to_string()))
        .bind(if query.limit > 0 { query.limit } else { i64::MAX })
        .bind(query.within.as_deref())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored).collect()
    }

    /// Retention: removes each namespace's records recorded before `before` and appends a
    /// checkpoint naming the last removed hash, so the rest still verifies. Returns the count.
    pub async fn forget_before(&self, before: jiff::Timestamp) -> Result<i64, sqlx::Error> {
        let mut removed = 0;
        for namespace in self.namespaces().await? {
            removed += self.forget_in(&namespace, before).await?;
        }
        Ok(removed)
    }

    async fn forget_in(&self, namespace: &str, before: jiff::Timestamp) -> Result<i64, sqlx::Error> {
        self.ready().await?;
        // The newest record older than `before`; a checkpoint is never the last one kept away.
        let last: Option<(i64, String)> = sqlx::query_as(
            "SELECT position, hash FROM archive_records
             WHERE namespace = $1 AND recorded_at < $2::timestamptz AND kind <> 'checkpoint'
             ORDER BY position DESC LIMIT 1",
        )
        .bind(namespace)
        .bind(before.to_string())
        .fetch_optional(&self.pool)
        .await?;
        let Some((through, last_hash)) = last else { return Ok(0) };
        // The removal and its checkpoint land together, or neither does.
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM archive_records WHERE namespace = $1 AND position <= $2")
            .bind(namespace)
            .bind(through)
            .execute(&mut *tx)
            .await?
            .rows_affected() as i64;
        let checkpoint =
            Checkpoint { deleted_through: through, last_deleted_hash: last_hash, deleted, before: before.to_string() };
        let content = serde_json::to_string(&checkpoint).expect("a checkpoint serializes");
        let uid = format!("checkpoint-{namespace}-{through}");
        let (tx, _) = append(tx, namespace, Kind::Checkpoint, &uid, &content).await?;
        tx.commit().await?;
        Ok(deleted)
    }
}

/// Applies the migrations not applied yet, one migrator at a time.
async fn migrate(pool: PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    // One migrator at a time, whichever replica starts first.
    sqlx::query("SELECT pg_advisory_xact_lock(4242)").execute(&mut *tx).await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS archive_schema (version integer PRIMARY KEY)").execute(&mut *tx).await?;
    let done: Option<i32> = sqlx::query_scalar("SELECT max(version) FROM archive_schema").fetch_one(&mut *tx).await?;
    for &(version, sql) in MIGRATIONS {
        if Some(version) <= done {
            continue;
        }
        // A plain string runs unprepared, so one migration may hold several statements.
        sqlx::Executor::execute(&mut *tx, sql).await?;
        sqlx::query("INSERT INTO archive_schema (version) VALUES ($1)").bind(version).execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// Appends to the namespace's chain inside `tx`, holding its head row until `tx` ends; gives the
/// transaction back for the caller to commit with whatever else it did in it.
async fn append(
    mut tx: Transaction<'static, Postgres>,
    namespace: &str,
    kind: Kind,
    uid: &str,
    content: &str,
) -> Result<(Transaction<'static, Postgres>, Outcome), sqlx::Error> {
    sqlx::query("INSERT INTO archive_heads (namespace, position, hash) VALUES ($1, 0, $2) ON CONFLICT DO NOTHING")
        .bind(namespace)
        .bind(GENESIS)
        .execute(&mut *tx)
        .await?;
    let head = sqlx::query("SELECT position, hash FROM archive_heads WHERE namespace = $1 FOR UPDATE")
        .bind(namespace)
        .fetch_one(&mut *tx)
        .await?;
    // Checked under the head's lock: a second writer of the same record waits here, then sees it.
    let there: Option<i64> = sqlx::query_scalar("SELECT 1::bigint FROM archive_records WHERE uid = $1")
        .bind(uid)
        .fetch_optional(&mut *tx)
        .await?;
    if there.is_some() {
        return Ok((tx, Outcome::AlreadyThere));
    }
    let mut record = Stored {
        namespace: namespace.to_string(),
        position: head.get::<i64, _>(0) + 1,
        kind,
        uid: uid.to_string(),
        recorded_at: jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        content: content.to_string(),
        prev_hash: head.get(1),
        hash: String::new(),
    };
    record.hash = chain::link(&record);
    let parsed: serde_json::Value = serde_json::from_str(content).unwrap_or_default();
    sqlx::query(
        "INSERT INTO archive_records
           (namespace, position, kind, uid, recorded_at, workflow, deciders, content, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5::timestamptz, $6, $7, $8, $9, $10)",
    )
    .bind(namespace)
    .bind(record.position)
    .bind(kind.as_str())
    .bind(uid)
    .bind(&record.recorded_at)
    .bind(parsed["workflow"].as_str())
    .bind(deciders(&parsed))
    .bind(content)
    .bind(&record.prev_hash)
    .bind(&record.hash)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE archive_heads SET position = $2, hash = $3 WHERE namespace = $1")
        .bind(namespace)
        .bind(record.position)
        .bind(&record.hash)
        .execute(&mut *tx)
        .await?;
    Ok((tx, Outcome::Added))
}

/// Who decided a gate: its decider and every voter of a quorum (`decidedBy: alice, carol`), so
/// each finds the gate among their own decisions.
fn deciders(content: &serde_json::Value) -> Vec<String> {
    let named = content["decidedBy"].as_str().into_iter().flat_map(|d| d.split(',')).map(str::trim);
    let voters = content["votes"].as_object().into_iter().flat_map(|v| v.keys().map(String::as_str));
    let mut all: Vec<String> = named.chain(voters).filter(|d| !d.is_empty()).map(str::to_string).collect();
    all.sort();
    all.dedup();
    all
}

fn stored(row: &PgRow) -> Result<Stored, sqlx::Error> {
    let kind: String = row.try_get(2)?;
    Ok(Stored {
        namespace: row.try_get(0)?,
        position: row.try_get(1)?,
        kind: Kind::parse(&kind).ok_or_else(|| sqlx::Error::Decode(format!("unknown record kind {kind:?}").into()))?,
        uid: row.try_get(3)?,
        recorded_at: row.try_get(4)?,
        content: row.try_get(5)?,
        prev_hash: row.try_get(6)?,
        hash: row.try_get(7)?,
    })
}
