//! S3 adapters: the object source the engine streams files from, and the quarantine
//! sink that keeps bad rows as JSON lines under `quarantine/` in the output bucket.

use aws_smithy_types::error::display::DisplayErrorContext;
use std::io::Read;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use csvflow_core::ports::{FeedSink, ObjectRef, ObjectSource, QuarantineSink};
use csvflow_core::{BadRow, Pipeline};
use tokio_util::io::SyncIoBridge;

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("cannot read s3://{bucket}/{key}: {}", DisplayErrorContext(source.as_ref()))]
    Get {
        bucket: String,
        key: String,
        #[source]
        source: Box<aws_sdk_s3::Error>,
    },
    #[error("cannot write s3://{bucket}/{key}: {}", DisplayErrorContext(source.as_ref()))]
    Put {
        bucket: String,
        key: String,
        #[source]
        source: Box<aws_sdk_s3::Error>,
    },
    #[error("cannot encode quarantined rows of {file}: {source}")]
    Encode {
        file: String,
        #[source]
        source: serde_json::Error,
    },
}

impl S3Error {
    /// True when retrying cannot help (the object is gone or access is denied).
    pub fn is_permanent(&self) -> bool {
        match self {
            S3Error::Get { source, .. } | S3Error::Put { source, .. } => matches!(
                source.as_ref(),
                aws_sdk_s3::Error::NoSuchKey(_) | aws_sdk_s3::Error::NoSuchBucket(_)
            ),
            S3Error::Encode { .. } => true,
        }
    }
}

/// Streams objects from S3 without buffering them.
#[derive(Clone)]
pub struct S3Objects {
    client: Client,
}

impl S3Objects {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

impl ObjectSource for S3Objects {
    type Error = S3Error;

    async fn open(&self, object: &ObjectRef) -> Result<(ObjectRef, Box<dyn Read + Send>), S3Error> {
        let response = self
            .client
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .set_version_id(object.version_id.clone().filter(|v| v != "null"))
            .send()
            .await
            .map_err(|e| S3Error::Get {
                bucket: object.bucket.clone(),
                key: object.key.clone(),
                source: Box::new(e.into()),
            })?;
        let mut opened = object.clone();
        if opened.version_id.is_none() {
            opened.version_id = response.version_id().map(str::to_owned);
        }
        if opened.etag.is_none() {
            opened.etag = response.e_tag().map(|e| e.trim_matches('"').to_owned());
        }
        // The bridge must be created on the runtime; it is then read on a blocking thread.
        let reader = SyncIoBridge::new(response.body.into_async_read());
        Ok((opened, Box::new(reader)))
    }
}

/// Writes bad rows to `s3://OUTPUT/quarantine/<pipeline>/<bucket>/<key>@<revision>.jsonl`.
#[derive(Clone)]
pub struct S3Quarantine {
    client: Client,
    bucket: String,
}

impl S3Quarantine {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    /// The deterministic object key for a file's bad rows (a retry overwrites it).
    pub fn key_for(pipeline: &str, file: &ObjectRef) -> String {
        format!(
            "quarantine/{pipeline}/{}/{}@{}.jsonl",
            file.bucket,
            file.key,
            file.revision()
        )
    }
}

impl QuarantineSink for S3Quarantine {
    type Error = S3Error;

    async fn quarantine(
        &self,
        pipeline: &Pipeline,
        file: &ObjectRef,
        rows: &[BadRow],
    ) -> Result<(), S3Error> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut body = Vec::new();
        for row in rows {
            serde_json::to_writer(&mut body, row).map_err(|source| S3Error::Encode {
                file: file.uri(),
                source,
            })?;
            body.push(b'\n');
        }
        let key = Self::key_for(pipeline.name(), file);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/x-ndjson")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| S3Error::Put {
                bucket: self.bucket.clone(),
                key,
                source: Box::new(e.into()),
            })?;
        Ok(())
    }
}

/// Writes `s3://OUTPUT/feeds/<pipeline>/<aggregate>/latest.json` after each commit, for
/// static dashboards and other consumers.
#[derive(Clone)]
pub struct S3Feeds {
    client: Client,
    bucket: String,
}

impl S3Feeds {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    pub fn key_for(pipeline: &str, aggregate: &str) -> String {
        format!("feeds/{pipeline}/{aggregate}/latest.json")
    }
}

impl FeedSink for S3Feeds {
    type Error = S3Error;

    async fn publish_feed(
        &self,
        pipeline: &Pipeline,
        aggregate: &str,
        json: Vec<u8>,
    ) -> Result<(), S3Error> {
        let key = Self::key_for(pipeline.name(), aggregate);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .cache_control("max-age=5")
            .body(ByteStream::from(json))
            .send()
            .await
            .map_err(|e| S3Error::Put {
                bucket: self.bucket.clone(),
                key,
                source: Box::new(e.into()),
            })?;
        Ok(())
    }
}
