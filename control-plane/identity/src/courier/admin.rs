//! The courier's queue as the admin API reads it, in Kratos's shape: messages newest first
//! with keyset pages (`page_token`) and the filters `status` and `recipient`, or one message
//! by id. Read-only. A one-time code is masked here even while its message is still queued:
//! the admin API is not a way to read codes. This module must not answer HTTP: the caller
//! passes the query pairs and the origin its `Link` URLs start with, and maps the errors.

use portcullis_model::identity::url_segment;
use portcullis_model::{paging, rfc3339};
use portcullis_store::Store;
use portcullis_store::courier::{CourierFilter, CourierMessageRow, STATUSES};
use serde_json::{Value, json};

use super::MASK;
use crate::admin::{IdentityError, Page};

const DEFAULT_PAGE_SIZE: i64 = 250;
const MAX_PAGE_SIZE: i64 = 1000;

/// One page of messages for the query `pairs`; `origin` (`scheme://host`) starts the `Link` URLs.
pub async fn list(store: &Store, pairs: &[(String, String)], origin: &str) -> Result<Page, IdentityError> {
    let mut page_size = DEFAULT_PAGE_SIZE;
    let mut after: Option<(i64, String)> = None;
    let mut filter = CourierFilter::default();
    for (key, value) in pairs {
        match key.as_str() {
            "page_size" => {
                page_size = value.parse::<i64>().ok().filter(|n| (1..=MAX_PAGE_SIZE).contains(n)).ok_or_else(|| {
                    IdentityError::Invalid(format!("page_size: must be a number from 1 to {MAX_PAGE_SIZE}"))
                })?;
            }
            "page_token" if !value.is_empty() => {
                after = Some(paging::parse_token(value).map_err(|e| IdentityError::Invalid(e.to_string()))?);
            }
            "status" if !value.is_empty() => {
                if !STATUSES.contains(&value.as_str()) {
                    return Err(IdentityError::Invalid(format!(
                        "status: must be one of {}, not {value:?}",
                        STATUSES.join(", ")
                    )));
                }
                filter.status = Some(value.clone());
            }
            "recipient" if !value.is_empty() => filter.recipient = Some(value.clone()),
            _ => {}
        }
    }
    let position = after.as_ref().map(|(at, id)| (*at, id.as_str()));
    let mut rows = store.list_courier_messages(&filter, position, page_size + 1).await?;
    let more = rows.len() as i64 > page_size;
    rows.truncate(usize::try_from(page_size).unwrap_or(0));
    let items: Vec<Value> = rows.iter().map(render).collect();
    let mut base = format!("{origin}/admin/courier/messages?page_size={page_size}");
    if let Some(status) = &filter.status {
        base.push_str(&format!("&status={status}"));
    }
    if let Some(recipient) = &filter.recipient {
        base.push_str(&format!("&recipient={}", url_segment(recipient)));
    }
    let mut link = format!("<{base}&page_token=>; rel=\"first\"");
    if let (true, Some(last)) = (more, rows.last()) {
        link.push_str(&format!(",<{base}&page_token={}>; rel=\"next\"", paging::token(last.created_at, &last.id)));
    }
    Ok(Page { items, link })
}

/// Message `id` in Kratos's shape.
pub async fn get(store: &Store, id: &str) -> Result<Value, IdentityError> {
    let row = store.get_courier_message(id).await?.ok_or(IdentityError::NotFound)?;
    Ok(render(&row))
}

/// Kratos's `courierMessage`, the code masked.
fn render(row: &CourierMessageRow) -> Value {
    let masked = |text: &str| match &row.secret {
        Some(secret) => text.replace(secret.as_str(), MASK),
        None => text.to_owned(),
    };
    let dispatches: Value = serde_json::from_str(&row.dispatches).unwrap_or_else(|_| json!([]));
    json!({
        "id": row.id,
        "status": row.status,
        "type": row.kind,
        "recipient": row.recipient,
        "subject": masked(&row.subject),
        "body": masked(&row.body),
        "template_type": row.template_type,
        "send_count": row.send_count,
        "created_at": rfc3339(row.created_at),
        "updated_at": rfc3339(row.updated_at),
        "dispatches": dispatches,
    })
}
