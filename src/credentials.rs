//! Credentials published into Secrets: access keys and console passwords.

use crate::api::{IamUser, IamUserStatus};
use crate::controller::Synced;
use crate::controller::runtime::Context;
use crate::error::{Error, Result};

/// Label selector of the Secrets the operator writes.
pub const MANAGED_BY_SELECTOR: &str = "app.kubernetes.io/managed-by=iam-operator";

pub async fn sync(
    _ctx: &Context,
    obj: &IamUser,
    _status: &mut IamUserStatus,
    _synced: &mut Synced,
) -> Result<()> {
    let wants_key = obj.spec.access_key.as_ref().is_some_and(|a| a.enabled);
    let wants_console = obj.spec.console.as_ref().is_some_and(|c| c.enabled);
    if wants_key || wants_console {
        return Err(Error::InvalidSpec(
            "credentials are not supported by this version of the operator".into(),
        ));
    }
    Ok(())
}

pub async fn release(_ctx: &Context, _obj: &IamUser) -> Result<()> {
    Ok(())
}
