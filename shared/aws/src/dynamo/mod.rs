//! The DynamoDB window store: commits a file's window partials exactly once.
//!
//! A file's cells are cut into deterministic chunks (same file, same chunks). Each chunk
//! is one `TransactWriteItems`: the merged window items, each conditioned on the
//! version read (optimistic concurrency, so concurrent files never lose an update), plus
//! a ledger item `chunk#N` conditioned on not existing. A re-delivered file, a retry
//! after a crash, or a concurrent duplicate finds its committed chunks in the ledger
//! and skips them, so every row counts exactly once. Writes scale with cells, not rows.

pub mod items;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, Delete, KeysAndAttributes, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use aws_smithy_types::error::display::DisplayErrorContext;
use csvflow_core::alerting::AlertMessage;
use csvflow_core::ports::{
    AlertOutbox, ChunkOutcome, FileClaim, ObjectRef, WindowReader, WindowStore,
};
use csvflow_core::{
    merge_sessions, Aggregate, CellChange, CellKey, CellState, FileReport, Pipeline, WindowAlert,
};

use items::{Item, StoredWindow, WindowItem};

/// Most window writes in one transaction (DynamoDB allows 100 actions; one is the ledger).
const CHUNK_WRITES: usize = 99;
/// Attempts per chunk when concurrent writers keep winning the race.
const CHUNK_ATTEMPTS: u32 = 12;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("DynamoDB {operation} on {table} failed: {}", DisplayErrorContext(source.as_ref()))]
    Dynamo {
        operation: &'static str,
        table: String,
        #[source]
        source: Box<aws_sdk_dynamodb::Error>,
    },
    #[error(transparent)]
    Corrupt(#[from] items::CorruptItem),
    #[error("cannot build a DynamoDB request: {0}")]
    Build(#[from] aws_sdk_dynamodb::error::BuildError),
    #[error("cannot encode window state: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("aggregate {aggregate:?} is not in pipeline {pipeline:?}")]
    UnknownAggregate { pipeline: String, aggregate: String },
    #[error("chunk {chunk} of {file} lost the race {attempts} times (contention or throttling); retry the file")]
    Contention {
        file: String,
        chunk: usize,
        attempts: u32,
    },
    #[error("chunk {chunk} of {file} needs {writes} writes, more than one transaction holds")]
    ChunkTooLarge {
        file: String,
        chunk: usize,
        writes: usize,
    },
}

/// A file as the ledger records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRecord {
    /// `processing`, `done` or `failed`.
    pub status: String,
    pub rows: u64,
    pub bad: u64,
    pub late: u64,
}

/// Table names and retention, read once from the environment by the binaries.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub windows_table: String,
    pub ledger_table: String,
    /// Windows expire (TTL) this long after they end.
    pub retention: Duration,
}

/// [`WindowStore`] over the windows and ledger tables.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    config: StoreConfig,
}

impl DynamoStore {
    pub fn new(client: Client, config: StoreConfig) -> Self {
        Self { client, config }
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    fn dynamo_error<E>(&self, operation: &'static str, table: &str) -> impl FnOnce(E) -> StoreError
    where
        E: Into<aws_sdk_dynamodb::Error>,
    {
        let table = table.to_owned();
        move |e| StoreError::Dynamo {
            operation,
            table,
            source: Box::new(e.into()),
        }
    }

    async fn get_ledger(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        let table = &self.config.ledger_table;
        let out = self
            .client
            .get_item()
            .table_name(table)
            .key("pk", items::s(pk))
            .key("sk", items::s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(self.dynamo_error("GetItem", table))?;
        Ok(out.item)
    }

    /// Reads an aggregate's stored windows: one group's when `group` is given (a Query),
    /// otherwise all of them (a Scan filtered on the aggregate; for tools, not hot paths).
    pub async fn windows(
        &self,
        pipeline: &str,
        aggregate: &str,
        group: Option<&[String]>,
    ) -> Result<Vec<StoredWindow>, StoreError> {
        let table = &self.config.windows_table;
        let mut found = Vec::new();
        match group {
            Some(group) => {
                let mut pages = self
                    .client
                    .query()
                    .table_name(table)
                    .key_condition_expression("pk = :pk")
                    .expression_attribute_values(
                        ":pk",
                        items::s(items::window_pk(pipeline, aggregate, group)),
                    )
                    .consistent_read(true)
                    .into_paginator()
                    .items()
                    .send();
                while let Some(item) = pages.next().await {
                    found.push(items::read_window(
                        &item.map_err(self.dynamo_error("Query", table))?,
                    )?);
                }
            }
            None => {
                let mut pages = self
                    .client
                    .scan()
                    .table_name(table)
                    .filter_expression("agg = :agg")
                    .expression_attribute_values(
                        ":agg",
                        items::s(items::aggregate_tag(pipeline, aggregate)),
                    )
                    .consistent_read(true)
                    .into_paginator()
                    .items()
                    .send();
                while let Some(item) = pages.next().await {
                    found.push(items::read_window(
                        &item.map_err(self.dynamo_error("Scan", table))?,
                    )?);
                }
            }
        }
        Ok(found)
    }

    /// An outbox item: under the file's ledger partition, indexed by pipeline and time.
    fn alert_item(
        &self,
        pipeline: &Pipeline,
        file_pk: &str,
        alert: &AlertMessage,
    ) -> Result<Item, StoreError> {
        Ok(Item::from([
            ("pk".to_owned(), items::s(file_pk)),
            ("sk".to_owned(), items::s(format!("alert#{}", alert.id))),
            (
                "alerts_pk".to_owned(),
                items::s(items::alerts_pk(pipeline.name())),
            ),
            ("detected_at".to_owned(), items::n(alert.detected_at_ms)),
            ("alert_id".to_owned(), items::s(&alert.id)),
            ("rule".to_owned(), items::s(&alert.rule)),
            ("status".to_owned(), items::s("pending")),
            (
                "payload".to_owned(),
                items::s(serde_json::to_string(alert)?),
            ),
            (
                "expires_at".to_owned(),
                items::n(expires_at(now_ms(), LEDGER_RETENTION)),
            ),
        ]))
    }

    /// The ledger's file records of a pipeline (a scan: for status pages and the demo,
    /// not for the hot path).
    pub async fn files(&self, pipeline: &str) -> Result<Vec<FileRecord>, StoreError> {
        let table = &self.config.ledger_table;
        let mut pages = self
            .client
            .scan()
            .table_name(table)
            .filter_expression("begins_with(pk, :prefix) AND sk = :file")
            .expression_attribute_values(":prefix", items::s(format!("file#{pipeline}#")))
            .expression_attribute_values(":file", items::s("file"))
            .into_paginator()
            .items()
            .send();
        let mut files = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(self.dynamo_error("Scan", table))?;
            let number = |name: &str| {
                item.get(name)
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            };
            files.push(FileRecord {
                status: item
                    .get("status")
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .unwrap_or_default(),
                rows: number("rows"),
                bad: number("bad"),
                late: number("late"),
            });
        }
        Ok(files)
    }

    /// Recent alerts of a pipeline, newest last, from the `alerts-by-time` index.
    pub async fn alerts_since(
        &self,
        pipeline: &str,
        since_ms: i64,
    ) -> Result<Vec<AlertMessage>, StoreError> {
        let table = &self.config.ledger_table;
        let mut pages = self
            .client
            .query()
            .table_name(table)
            .index_name(items::ALERTS_INDEX)
            .key_condition_expression("alerts_pk = :pk AND detected_at >= :since")
            .expression_attribute_values(":pk", items::s(items::alerts_pk(pipeline)))
            .expression_attribute_values(":since", items::n(since_ms))
            .into_paginator()
            .items()
            .send();
        let mut alerts = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(self.dynamo_error("Query", table))?;
            if let Some(payload) = item.get("payload").and_then(|p| p.as_s().ok()) {
                alerts.push(serde_json::from_str(payload)?);
            }
        }
        Ok(alerts)
    }

    /// The pipeline's watermark: max event time seen minus the allowed lateness.
    pub async fn watermark_ms(&self, pipeline: &Pipeline) -> Result<Option<i64>, StoreError> {
        let item = self
            .get_ledger(&items::watermark_pk(pipeline.name()), "watermark")
            .await?;
        Ok(item
            .as_ref()
            .and_then(|i| i.get("max_event_ms"))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok())
            .map(|max| max.saturating_sub(pipeline.allowed_lateness_ms())))
    }

    async fn chunks_in_ledger(&self, file_pk: &str) -> Result<Vec<usize>, StoreError> {
        let table = &self.config.ledger_table;
        let mut done = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :chunk)")
            .expression_attribute_values(":pk", items::s(file_pk))
            .expression_attribute_values(":chunk", items::s("chunk#"))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let item = item.map_err(self.dynamo_error("Query", table))?;
            if let Some(index) = item
                .get("sk")
                .and_then(|v| v.as_s().ok())
                .and_then(|sk| sk.strip_prefix("chunk#"))
                .and_then(|i| i.parse().ok())
            {
                done.push(index);
            }
        }
        Ok(done)
    }

    /// Reads the stored windows a chunk touches: exact cells by key, and for session
    /// aggregates every stored session of the group that could touch the new ones.
    async fn load(
        &self,
        pipeline: &Pipeline,
        cells: &[(&CellKey, &CellState)],
    ) -> Result<BTreeMap<(String, String), StoredWindow>, StoreError> {
        let mut loaded = BTreeMap::new();
        let mut exact: Vec<Item> = Vec::new();
        for (key, _) in cells {
            let aggregate = aggregate_of(pipeline, &key.aggregate)?;
            let pk = items::window_pk(pipeline.name(), &key.aggregate, &key.group);
            match aggregate.session_gap_ms() {
                Some(gap) => {
                    for stored in self
                        .sessions_near(&pk, key.start_ms - gap, key.end_ms + gap)
                        .await?
                    {
                        loaded.insert((pk.clone(), items::window_sk(stored.key.start_ms)), stored);
                    }
                }
                None => exact.push(Item::from([
                    ("pk".to_owned(), items::s(pk)),
                    ("sk".to_owned(), items::s(items::window_sk(key.start_ms))),
                ])),
            }
        }
        for item in self.get_items(&self.config.windows_table, exact).await? {
            let stored = items::read_window(&item)?;
            let pk = items::window_pk(pipeline.name(), &stored.key.aggregate, &stored.key.group);
            loaded.insert((pk, items::window_sk(stored.key.start_ms)), stored);
        }
        Ok(loaded)
    }

    /// Reads items by key with strongly consistent reads, in batches of 100, retrying
    /// unprocessed keys.
    async fn get_items(&self, table: &str, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::new();
        for batch in keys.chunks(100) {
            let mut wanted = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(batch.to_vec()))
                    .consistent_read(true)
                    .build()?,
            );
            let mut attempt = 0;
            while let Some(request) = wanted.take() {
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(table, request)
                    .send()
                    .await
                    .map_err(self.dynamo_error("BatchGetItem", table))?;
                found.extend(
                    out.responses
                        .unwrap_or_default()
                        .remove(table)
                        .unwrap_or_default(),
                );
                wanted = out
                    .unprocessed_keys
                    .and_then(|mut unprocessed| unprocessed.remove(table))
                    .filter(|k| !k.keys().is_empty());
                if wanted.is_some() {
                    attempt += 1;
                    tokio::time::sleep(backoff(attempt)).await;
                }
            }
        }
        Ok(found)
    }

    /// The previous window of each changed cell whose aggregate has rules reading
    /// `prev.`: from this chunk's new states when there, else from the table.
    async fn previous_windows(
        &self,
        pipeline: &Pipeline,
        changes: &[CellChange],
    ) -> Result<HashMap<CellKey, CellState>, StoreError> {
        let mut found = HashMap::new();
        let mut wanted = Vec::new();
        for change in changes {
            let aggregate = aggregate_of(pipeline, &change.key.aggregate)?;
            if !aggregate.rules_read_previous(pipeline) {
                continue;
            }
            let Some(prev) = aggregate.previous_key(&change.key) else {
                continue;
            };
            match changes.iter().find(|c| c.key == prev) {
                Some(c) => {
                    found.insert(prev, c.after.clone());
                }
                None => wanted.push(Item::from([
                    (
                        "pk".to_owned(),
                        items::s(items::window_pk(
                            pipeline.name(),
                            &prev.aggregate,
                            &prev.group,
                        )),
                    ),
                    ("sk".to_owned(), items::s(items::window_sk(prev.start_ms))),
                ])),
            }
        }
        for item in self.get_items(&self.config.windows_table, wanted).await? {
            let stored = items::read_window(&item)?;
            found.insert(stored.key, stored.state);
        }
        Ok(found)
    }

    /// Applies cool-downs to a chunk's window alerts: an alert of a rule with a cool-down
    /// is dropped when the last alerted window of the same rule and group starts less than
    /// the cool-down away. Returns the alerts kept and the cool-down items to write
    /// (version-checked like windows, so concurrent chunks cannot both alert).
    async fn apply_cooldowns(
        &self,
        pipeline: &Pipeline,
        alerts: Vec<(usize, WindowAlert)>,
    ) -> Result<(Vec<(usize, WindowAlert)>, Vec<TransactWriteItem>), StoreError> {
        let cooldown_of = |rule: &str| {
            pipeline
                .window_rules()
                .iter()
                .find(|r| r.name == rule)
                .and_then(|r| r.cooldown_ms)
        };
        let pk_of = |a: &WindowAlert| {
            format!(
                "cooldown#{}#{}",
                a.rule,
                items::window_pk(pipeline.name(), &a.key.aggregate, &a.key.group)
            )
        };
        let mut keys: Vec<Item> = Vec::new();
        for (_, a) in &alerts {
            if cooldown_of(&a.rule).is_some() {
                let key = Item::from([
                    ("pk".to_owned(), items::s(pk_of(a))),
                    ("sk".to_owned(), items::s("cooldown")),
                ]);
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        if keys.is_empty() {
            return Ok((alerts, Vec::new()));
        }
        // pk -> (last alerted window start, version read, changed here)
        let mut state: HashMap<String, (Option<i64>, Option<u64>, bool)> = HashMap::new();
        for item in self.get_items(&self.config.ledger_table, keys).await? {
            let pk = item.get("pk").and_then(|v| v.as_s().ok()).cloned();
            let last = item
                .get("last_start_ms")
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok());
            let version = item
                .get("version")
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok());
            if let Some(pk) = pk {
                state.insert(pk, (last, version, false));
            }
        }
        let mut kept = Vec::with_capacity(alerts.len());
        for (change, alert) in alerts {
            let Some(cooldown) = cooldown_of(&alert.rule) else {
                kept.push((change, alert));
                continue;
            };
            let entry = state.entry(pk_of(&alert)).or_insert((None, None, false));
            if entry
                .0
                .is_some_and(|last| (alert.key.start_ms - last).abs() < cooldown)
            {
                tracing::info!(rule = %alert.rule, group = ?alert.key.group, start_ms = alert.key.start_ms, "alert suppressed by cool-down");
                continue;
            }
            *entry = (Some(alert.key.start_ms), entry.1, true);
            kept.push((change, alert));
        }
        let mut writes = Vec::new();
        for (pk, (last, version, changed)) in state {
            if !changed {
                continue;
            }
            let item = Item::from([
                ("pk".to_owned(), items::s(pk)),
                ("sk".to_owned(), items::s("cooldown")),
                (
                    "last_start_ms".to_owned(),
                    items::n(last.unwrap_or_default()),
                ),
                ("version".to_owned(), items::n(version.unwrap_or(0) + 1)),
                (
                    "expires_at".to_owned(),
                    items::n(expires_at(now_ms(), LEDGER_RETENTION)),
                ),
            ]);
            writes.push(put_if_version(&self.config.ledger_table, item, version)?);
        }
        Ok((kept, writes))
    }

    /// Stored sessions of one group overlapping `[from_ms, to_ms]`. Sessions of a group
    /// never overlap, so walking back from `to_ms` can stop at the first that ends early.
    async fn sessions_near(
        &self,
        pk: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<StoredWindow>, StoreError> {
        let table = &self.config.windows_table;
        let mut found = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(table)
            .key_condition_expression("pk = :pk AND sk <= :to")
            .expression_attribute_values(":pk", items::s(pk))
            .expression_attribute_values(":to", items::s(items::window_sk(to_ms)))
            .scan_index_forward(false)
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let stored = items::read_window(&item.map_err(self.dynamo_error("Query", table))?)?;
            if stored.key.end_ms < from_ms {
                break;
            }
            found.push(stored);
        }
        Ok(found)
    }

    /// Commits one chunk: load, merge, and write conditionally with its ledger item,
    /// retrying when a concurrent writer changed a window in between.
    /// Returns `None` when the ledger shows a concurrent delivery committed it first.
    async fn write_chunk(
        &self,
        pipeline: &Pipeline,
        file: &ObjectRef,
        index: usize,
        cells: &[(&CellKey, &CellState)],
    ) -> Result<Option<ChunkOutcome>, StoreError> {
        let file_pk = &items::file_pk(pipeline.name(), file);
        for attempt in 1..=CHUNK_ATTEMPTS {
            let loaded = self.load(pipeline, cells).await?;
            let plan = plan_chunk(pipeline, &loaded, cells)?;
            let mut actions = Vec::with_capacity(plan.changes.len() + plan.deletes.len() + 1);
            let file_uri = file.uri();
            for change in &plan.changes {
                let aggregate = aggregate_of(pipeline, &change.key.aggregate)?;
                let pk =
                    items::window_pk(pipeline.name(), &change.key.aggregate, &change.key.group);
                let previous = loaded.get(&(pk, items::window_sk(change.key.start_ms)));
                let item = WindowItem {
                    pipeline,
                    aggregate,
                    key: &change.key,
                    state: &change.after,
                    version: previous.map_or(1, |p| p.version + 1),
                    expires_at: expires_at(change.key.end_ms, self.config.retention),
                    file: &file_uri,
                }
                .to_item()?;
                actions.push(put_if_version(
                    &self.config.windows_table,
                    item,
                    previous.map(|p| p.version),
                )?);
            }
            for (pk, sk, version) in &plan.deletes {
                actions.push(delete_if_version(
                    &self.config.windows_table,
                    pk,
                    sk,
                    *version,
                )?);
            }
            // A threshold crossing is decided against the versions read above, so it
            // lands in exactly one committed transaction: its alert goes in with it.
            let previous = self.previous_windows(pipeline, &plan.changes).await?;
            let mut alerts = Vec::new();
            for (i, change) in plan.changes.iter().enumerate() {
                let aggregate = aggregate_of(pipeline, &change.key.aggregate)?;
                let prev = aggregate
                    .previous_key(&change.key)
                    .and_then(|k| previous.get(&k));
                alerts.extend(
                    pipeline
                        .window_alerts(change, prev)
                        .into_iter()
                        .map(|a| (i, a)),
                );
            }
            let (alerts, cooldown_writes) = self.apply_cooldowns(pipeline, alerts).await?;
            actions.extend(cooldown_writes);
            let now = now_ms();
            {
                for (i, alert) in alerts {
                    let change = &plan.changes[i];
                    let message =
                        AlertMessage::for_window(pipeline, &alert, change, &file_uri, now);
                    let item = self.alert_item(pipeline, file_pk, &message)?;
                    actions.push(
                        TransactWriteItem::builder()
                            .put(
                                Put::builder()
                                    .table_name(&self.config.ledger_table)
                                    .set_item(Some(item))
                                    .build()?,
                            )
                            .build(),
                    );
                }
            }
            if actions.len() > CHUNK_WRITES {
                return Err(StoreError::ChunkTooLarge {
                    file: file_uri,
                    chunk: index,
                    writes: actions.len(),
                });
            }
            let writes = actions.len() as u64 + 1;
            actions.push(ledger_chunk_put(
                &self.config.ledger_table,
                file_pk,
                index,
                cells.len(),
            )?);
            let ledger_position = actions.len() - 1;
            let table = &self.config.windows_table;
            match self
                .client
                .transact_write_items()
                .set_transact_items(Some(actions))
                .send()
                .await
            {
                Ok(_) => {
                    return Ok(Some(ChunkOutcome {
                        changes: plan.changes,
                        writes,
                    }))
                }
                Err(error) => {
                    let error: aws_sdk_dynamodb::Error = error.into();
                    match classify_cancellation(&error, ledger_position) {
                        Cancellation::AlreadyCommitted => return Ok(None),
                        Cancellation::Retry => {
                            tracing::debug!(chunk = index, attempt, file = %file_uri, "chunk lost a race; retrying");
                            tokio::time::sleep(backoff(attempt)).await;
                        }
                        Cancellation::Fatal => {
                            return Err(StoreError::Dynamo {
                                operation: "TransactWriteItems",
                                table: table.clone(),
                                source: Box::new(error),
                            })
                        }
                    }
                }
            }
        }
        Err(StoreError::Contention {
            file: file.uri(),
            chunk: index,
            attempts: CHUNK_ATTEMPTS,
        })
    }

    /// Raises the pipeline's max event time (never lowers it).
    async fn advance_watermark(
        &self,
        pipeline: &Pipeline,
        max_event_ms: i64,
    ) -> Result<(), StoreError> {
        let table = &self.config.ledger_table;
        let result = self
            .client
            .update_item()
            .table_name(table)
            .key("pk", items::s(items::watermark_pk(pipeline.name())))
            .key("sk", items::s("watermark"))
            .update_expression("SET max_event_ms = :m")
            .condition_expression("attribute_not_exists(max_event_ms) OR max_event_ms < :m")
            .expression_attribute_values(":m", items::n(max_event_ms))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(self.dynamo_error("UpdateItem", table)(e)),
        }
    }

    /// Sets the file record's status and figures. Every attribute goes through an
    /// expression name, as several (`status`, `rows`, ...) are DynamoDB reserved words.
    async fn set_file_status(
        &self,
        file_pk: &str,
        status: &str,
        extra: &[(&str, AttributeValue)],
    ) -> Result<(), StoreError> {
        let table = &self.config.ledger_table;
        let mut assignments = vec![
            "#status = :status".to_owned(),
            "#finished_at = :finished_at".to_owned(),
        ];
        let mut request = self
            .client
            .update_item()
            .table_name(table)
            .key("pk", items::s(file_pk))
            .key("sk", items::s("file"))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", items::s(status))
            .expression_attribute_names("#finished_at", "finished_at")
            .expression_attribute_values(":finished_at", items::n(now_ms()));
        for (name, value) in extra {
            assignments.push(format!("#{name} = :{name}"));
            request = request
                .expression_attribute_names(format!("#{name}"), *name)
                .expression_attribute_values(format!(":{name}"), value.clone());
        }
        request
            .update_expression(format!("SET {}", assignments.join(", ")))
            .send()
            .await
            .map_err(self.dynamo_error("UpdateItem", table))?;
        Ok(())
    }
}

impl WindowStore for DynamoStore {
    type Error = StoreError;

    async fn claim(&self, pipeline: &Pipeline, file: &ObjectRef) -> Result<FileClaim, StoreError> {
        let file_pk = items::file_pk(pipeline.name(), file);
        if let Some(record) = self.get_ledger(&file_pk, "file").await? {
            return Ok(claim_from_record(&record));
        }
        let watermark = self.watermark_ms(pipeline).await?;
        let table = &self.config.ledger_table;
        let mut put = self
            .client
            .put_item()
            .table_name(table)
            .item("pk", items::s(&file_pk))
            .item("sk", items::s("file"))
            .item("status", items::s("started"))
            .item("file", items::s(file.uri()))
            .item("started_at", items::n(now_ms()))
            .item(
                "expires_at",
                items::n(expires_at(now_ms(), LEDGER_RETENTION)),
            )
            .condition_expression("attribute_not_exists(pk)");
        if let Some(w) = watermark {
            put = put.item("watermark_ms", items::n(w));
        }
        if let Some(sequencer) = &file.sequencer {
            put = put.item("sequencer", items::s(sequencer));
        }
        match put.send().await {
            Ok(_) => Ok(FileClaim::Process {
                watermark_ms: watermark,
            }),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                // A concurrent delivery claimed it first: use the watermark it fixed.
                let record = self.get_ledger(&file_pk, "file").await?.unwrap_or_default();
                Ok(claim_from_record(&record))
            }
            Err(e) => Err(self.dynamo_error("PutItem", table)(e)),
        }
    }

    async fn committed_chunks(
        &self,
        pipeline: &Pipeline,
        file: &ObjectRef,
    ) -> Result<Vec<usize>, StoreError> {
        self.chunks_in_ledger(&items::file_pk(pipeline.name(), file))
            .await
    }

    async fn commit_chunk(
        &self,
        pipeline: &Pipeline,
        file: &ObjectRef,
        index: usize,
        cells: &[(&CellKey, &CellState)],
    ) -> Result<Option<ChunkOutcome>, StoreError> {
        self.write_chunk(pipeline, file, index, cells).await
    }

    async fn finish(
        &self,
        pipeline: &Pipeline,
        file: &ObjectRef,
        report: &FileReport,
        chunks: usize,
    ) -> Result<u64, StoreError> {
        let mut writes = 1;
        if let Some(max) = report.max_event_ms {
            self.advance_watermark(pipeline, max).await?;
            writes += 1;
        }
        self.set_file_status(
            &items::file_pk(pipeline.name(), file),
            "done",
            &[
                ("chunks", items::n(chunks)),
                ("cells", items::n(report.stats.cells)),
                ("rows", items::n(report.stats.rows)),
                ("bad", items::n(report.stats.bad)),
                ("late", items::n(report.stats.late)),
            ],
        )
        .await?;
        Ok(writes)
    }

    async fn mark_failed(
        &self,
        pipeline: &Pipeline,
        file: &ObjectRef,
        reason: &str,
    ) -> Result<(), StoreError> {
        let file_pk = items::file_pk(pipeline.name(), file);
        self.set_file_status(
            &file_pk,
            "failed",
            &[("reason", items::s(reason)), ("file", items::s(file.uri()))],
        )
        .await
    }
}

/// How long file records stay in the ledger: longer than S3/SQS can re-deliver.
const LEDGER_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

fn claim_from_record(record: &Item) -> FileClaim {
    if record
        .get("status")
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        == Some("done")
    {
        return FileClaim::Done;
    }
    FileClaim::Process {
        watermark_ms: record
            .get("watermark_ms")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok()),
    }
}

fn aggregate_of<'p>(pipeline: &'p Pipeline, name: &str) -> Result<&'p Aggregate, StoreError> {
    pipeline
        .aggregate(name)
        .ok_or_else(|| StoreError::UnknownAggregate {
            pipeline: pipeline.name().to_owned(),
            aggregate: name.to_owned(),
        })
}

/// The writes one chunk needs, worked out in memory from what was loaded.
struct ChunkPlan {
    /// Window items to put (before/after), for the transaction and for alerts.
    changes: Vec<CellChange>,
    /// Stored sessions absorbed into a merged one: (pk, sk, version read).
    deletes: Vec<(String, String, u64)>,
}

type Slot = (String, String);

fn plan_chunk(
    pipeline: &Pipeline,
    loaded: &BTreeMap<Slot, StoredWindow>,
    cells: &[(&CellKey, &CellState)],
) -> Result<ChunkPlan, StoreError> {
    // The working view: the loaded windows with this chunk's partials merged in.
    let mut view: BTreeMap<Slot, (CellKey, CellState)> = loaded
        .iter()
        .map(|(slot, stored)| (slot.clone(), (stored.key.clone(), stored.state.clone())))
        .collect();
    let mut touched: BTreeMap<Slot, Vec<CellKey>> = BTreeMap::new();
    for (key, partial) in cells {
        let aggregate = aggregate_of(pipeline, &key.aggregate)?;
        let pk = items::window_pk(pipeline.name(), &key.aggregate, &key.group);
        match aggregate.session_gap_ms() {
            Some(gap) => {
                let near: Vec<Slot> = view
                    .range((pk.clone(), String::new())..)
                    .take_while(|((p, _), _)| *p == pk)
                    // Session ends already include the gap: touching is overlapping, as
                    // in `WindowState` (in memory).
                    .filter(|(_, (k, _))| k.start_ms <= key.end_ms && key.start_ms <= k.end_ms)
                    .map(|(slot, _)| slot.clone())
                    .collect();
                let mut absorbed = Vec::new();
                let mut existing = Vec::new();
                for slot in near {
                    absorbed.extend(touched.remove(&slot).unwrap_or_default());
                    if let Some(window) = view.remove(&slot) {
                        absorbed.push(window.0.clone());
                        existing.push(window);
                    }
                }
                let (merged_key, merged) =
                    merge_sessions(gap, existing, ((*key).clone(), (*partial).clone()));
                let slot = (pk, items::window_sk(merged_key.start_ms));
                absorbed.retain(|k| k.start_ms != merged_key.start_ms);
                touched.insert(slot.clone(), absorbed);
                view.insert(slot, (merged_key, merged));
            }
            None => {
                let slot = (pk, items::window_sk(key.start_ms));
                match view.get_mut(&slot) {
                    Some((_, state)) => state.merge(partial),
                    None => {
                        view.insert(slot.clone(), ((*key).clone(), (*partial).clone()));
                    }
                }
                touched.entry(slot).or_default();
            }
        }
    }
    let mut changes = Vec::with_capacity(touched.len());
    for (slot, removed) in touched {
        if let Some((key, after)) = view.get(&slot) {
            let mut removed: Vec<CellKey> = removed
                .into_iter()
                .filter(|k| loaded.values().any(|l| &l.key == k))
                .collect();
            removed.dedup();
            changes.push(CellChange {
                key: key.clone(),
                before: loaded.get(&slot).map(|stored| stored.state.clone()),
                after: after.clone(),
                removed,
            });
        }
    }
    let deletes = loaded
        .iter()
        .filter(|(slot, _)| !view.contains_key(*slot))
        .map(|(slot, stored)| (slot.0.clone(), slot.1.clone(), stored.version))
        .collect();
    Ok(ChunkPlan { changes, deletes })
}

fn put_if_version(
    table: &str,
    item: Item,
    read_version: Option<u64>,
) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder().table_name(table).set_item(Some(item));
    let put = match read_version {
        Some(v) => put
            .condition_expression("version = :read")
            .expression_attribute_values(":read", items::n(v)),
        None => put.condition_expression("attribute_not_exists(pk)"),
    };
    Ok(TransactWriteItem::builder().put(put.build()?).build())
}

fn delete_if_version(
    table: &str,
    pk: &str,
    sk: &str,
    version: u64,
) -> Result<TransactWriteItem, StoreError> {
    let delete = Delete::builder()
        .table_name(table)
        .key("pk", items::s(pk))
        .key("sk", items::s(sk))
        .condition_expression("version = :read")
        .expression_attribute_values(":read", items::n(version))
        .build()?;
    Ok(TransactWriteItem::builder().delete(delete).build())
}

fn ledger_chunk_put(
    table: &str,
    file_pk: &str,
    index: usize,
    cells: usize,
) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(table)
        .item("pk", items::s(file_pk))
        .item("sk", items::s(items::chunk_sk(index)))
        .item("cells", items::n(cells))
        .item("committed_at", items::n(now_ms()))
        .item(
            "expires_at",
            items::n(expires_at(now_ms(), LEDGER_RETENTION)),
        )
        .condition_expression("attribute_not_exists(pk)")
        .build()?;
    Ok(TransactWriteItem::builder().put(put).build())
}

enum Cancellation {
    /// The ledger item exists: this chunk was committed by another delivery.
    AlreadyCommitted,
    /// A window changed since it was read, a conflicting transaction, or throttling.
    Retry,
    Fatal,
}

fn classify_cancellation(error: &aws_sdk_dynamodb::Error, ledger_position: usize) -> Cancellation {
    use aws_sdk_dynamodb::Error as E;
    match error {
        E::TransactionCanceledException(cancelled) => {
            let reasons = cancelled.cancellation_reasons();
            let code = |i: usize| reasons.get(i).and_then(|r| r.code()).unwrap_or("None");
            if code(ledger_position) == "ConditionalCheckFailed" {
                return Cancellation::AlreadyCommitted;
            }
            Cancellation::Retry
        }
        E::TransactionConflictException(_)
        | E::ProvisionedThroughputExceededException(_)
        | E::RequestLimitExceeded(_)
        | E::ThrottlingException(_)
        | E::InternalServerError(_) => Cancellation::Retry,
        _ => Cancellation::Fatal,
    }
}

/// Exponential backoff with full jitter, capped at two seconds.
fn backoff(attempt: u32) -> Duration {
    let cap_ms = (25u64 << attempt.min(7)).min(2_000);
    let jitter = (now_ms() as u64)
        .wrapping_mul(6364136223846793005)
        .rotate_left(17)
        % cap_ms.max(1);
    Duration::from_millis(jitter.max(5))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// TTL in epoch seconds: `retention` after `end_ms`.
fn expires_at(end_ms: i64, retention: Duration) -> i64 {
    end_ms / 1000 + retention.as_secs() as i64
}

/// How long a claim on an alert holds before another delivery may publish it.
const ALERT_LEASE_MS: i64 = 30_000;

impl AlertOutbox for DynamoStore {
    type Error = StoreError;

    async fn record(
        &self,
        pipeline: &Pipeline,
        file: &ObjectRef,
        alerts: &[AlertMessage],
    ) -> Result<(), StoreError> {
        let file_pk = items::file_pk(pipeline.name(), file);
        let table = &self.config.ledger_table;
        for alert in alerts {
            let result = self
                .client
                .put_item()
                .table_name(table)
                .set_item(Some(self.alert_item(pipeline, &file_pk, alert)?))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await;
            match result {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(self.dynamo_error("PutItem", table)(e)),
            }
        }
        Ok(())
    }

    async fn claim_unpublished(
        &self,
        pipeline: &Pipeline,
        file: &ObjectRef,
    ) -> Result<Vec<AlertMessage>, StoreError> {
        let file_pk = items::file_pk(pipeline.name(), file);
        let table = &self.config.ledger_table;
        let mut pages = self
            .client
            .query()
            .table_name(table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :alert)")
            .filter_expression("#status <> :published")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":pk", items::s(&file_pk))
            .expression_attribute_values(":alert", items::s("alert#"))
            .expression_attribute_values(":published", items::s("published"))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut claimed = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(self.dynamo_error("Query", table))?;
            let (Some(sk), Some(payload)) = (
                item.get("sk").and_then(|v| v.as_s().ok()),
                item.get("payload").and_then(|v| v.as_s().ok()),
            ) else {
                continue;
            };
            let now = now_ms();
            let claim = self
                .client
                .update_item()
                .table_name(table)
                .key("pk", items::s(&file_pk))
                .key("sk", items::s(sk))
                .update_expression("SET #status = :publishing, lease_until = :lease")
                .condition_expression(
                    "#status = :pending OR (#status = :publishing AND lease_until < :now)",
                )
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":publishing", items::s("publishing"))
                .expression_attribute_values(":pending", items::s("pending"))
                .expression_attribute_values(":lease", items::n(now + ALERT_LEASE_MS))
                .expression_attribute_values(":now", items::n(now))
                .send()
                .await;
            match claim {
                Ok(_) => claimed.push(serde_json::from_str(payload)?),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(self.dynamo_error("UpdateItem", table)(e)),
            }
        }
        Ok(claimed)
    }

    async fn mark_published(
        &self,
        pipeline: &Pipeline,
        file: &ObjectRef,
        alert: &AlertMessage,
    ) -> Result<(), StoreError> {
        let table = &self.config.ledger_table;
        self.client
            .update_item()
            .table_name(table)
            .key("pk", items::s(items::file_pk(pipeline.name(), file)))
            .key("sk", items::s(format!("alert#{}", alert.id)))
            .update_expression("SET #status = :published, published_at = :now")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":published", items::s("published"))
            .expression_attribute_values(":now", items::n(now_ms()))
            .send()
            .await
            .map_err(self.dynamo_error("UpdateItem", table))?;
        Ok(())
    }
}

impl WindowReader for DynamoStore {
    type Error = StoreError;

    async fn latest_windows(
        &self,
        pipeline: &Pipeline,
        aggregate: &str,
        limit: usize,
    ) -> Result<Vec<(CellKey, CellState)>, StoreError> {
        let table = &self.config.windows_table;
        let out = self
            .client
            .query()
            .table_name(table)
            .index_name(items::AGGREGATE_INDEX)
            .key_condition_expression("agg = :agg")
            .expression_attribute_values(
                ":agg",
                items::s(items::aggregate_tag(pipeline.name(), aggregate)),
            )
            .scan_index_forward(false)
            .limit(limit.min(1_000) as i32)
            .send()
            .await
            .map_err(self.dynamo_error("Query", table))?;
        out.items()
            .iter()
            .map(|item| {
                items::read_window(item)
                    .map(|w| (w.key, w.state))
                    .map_err(StoreError::from)
            })
            .collect()
    }

    async fn window_keys_starting_between(
        &self,
        pipeline: &Pipeline,
        aggregate: &str,
        from_start_ms: i64,
        to_start_ms: i64,
    ) -> Result<Vec<CellKey>, StoreError> {
        let table = &self.config.windows_table;
        let mut pages = self
            .client
            .query()
            .table_name(table)
            .index_name(items::AGGREGATE_INDEX)
            .key_condition_expression("agg = :agg AND sk BETWEEN :from AND :to")
            .expression_attribute_values(
                ":agg",
                items::s(items::aggregate_tag(pipeline.name(), aggregate)),
            )
            .expression_attribute_values(":from", items::s(items::window_sk(from_start_ms)))
            .expression_attribute_values(":to", items::s(items::window_sk(to_start_ms)))
            .into_paginator()
            .items()
            .send();
        let mut keys = Vec::new();
        while let Some(item) = pages.next().await {
            let stored = items::read_window(&item.map_err(self.dynamo_error("Query", table))?)?;
            keys.push(stored.key);
        }
        Ok(keys)
    }

    async fn read_windows(
        &self,
        pipeline: &Pipeline,
        keys: &[CellKey],
    ) -> Result<Vec<(CellKey, CellState)>, StoreError> {
        let wanted = keys
            .iter()
            .map(|k| {
                Item::from([
                    (
                        "pk".to_owned(),
                        items::s(items::window_pk(pipeline.name(), &k.aggregate, &k.group)),
                    ),
                    ("sk".to_owned(), items::s(items::window_sk(k.start_ms))),
                ])
            })
            .collect();
        let mut found = Vec::with_capacity(keys.len());
        for item in self.get_items(&self.config.windows_table, wanted).await? {
            let stored = items::read_window(&item)?;
            found.push((stored.key, stored.state));
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }
}
