//! An [`Iam`] that forwards every call and records in [`Known`] what the operator read and
//! wrote of each user, group and policy, so that the drift scan does not take the
//! operator's own writes for drift (see `controller::drift`).

use crate::controller::drift::{Known, KnownGroup, KnownRole, KnownUser};
use crate::iam::{
    AccessKeyInfo, AccountSnapshot, GroupInfo, Iam, IamResult, InstanceProfileInfo, KeyStatus,
    MfaDevice, NewAccessKey, NewRole, PasswordPolicy, PolicyEntities, PolicyInfo, PolicyVersion,
    Principal, RoleInfo, SessionCredentials, UserInfo,
};
use async_trait::async_trait;
use secrecy::SecretString;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub struct KnowingIam {
    inner: Arc<dyn Iam>,
    known: Arc<Mutex<Known>>,
}

impl KnowingIam {
    pub fn new(inner: Arc<dyn Iam>, known: Arc<Mutex<Known>>) -> Self {
        Self { inner, known }
    }

    fn note(&self, f: impl FnOnce(&mut Known)) {
        if let Ok(mut known) = self.known.lock() {
            f(&mut known)
        }
    }

    /// After a write to `principal`: `f` on success, and it was written now; on failure
    /// (it may or may not have taken effect) nothing is known of it any more.
    fn wrote<T>(
        &self,
        principal: Principal<'_>,
        r: &IamResult<T>,
        f: impl FnOnce(&mut Known, &str),
    ) {
        let now = Instant::now();
        self.note(|k| match (principal, r) {
            (Principal::User(u), Ok(_)) => {
                f(k, u);
                k.wrote_user(u, now);
            }
            (Principal::Group(g), Ok(_)) => {
                f(k, g);
                k.wrote_group(g, now);
            }
            (Principal::User(u), Err(_)) => k.forget_user(u),
            (Principal::Group(g), Err(_)) => k.forget_group(g),
            (Principal::Role(r), Ok(_)) => {
                f(k, r);
                k.wrote_role(r, now);
            }
            (Principal::Role(r), Err(_)) => k.forget_role(r),
        })
    }

    fn wrote_policy<T>(&self, arn: &str, r: &IamResult<T>, f: impl FnOnce(&mut Known)) {
        let now = Instant::now();
        self.note(|k| match r {
            Ok(_) => {
                f(k);
                k.wrote_policy(arn, now);
            }
            Err(_) => k.forget_policy(arn),
        })
    }
}

fn set(items: &[String]) -> BTreeSet<String> {
    items.iter().cloned().collect()
}

/// Updates the known attachments or inline policies of a user or group.
fn attached(k: &mut Known, principal: Principal<'_>, f: impl FnOnce(&mut BTreeSet<String>)) {
    match principal {
        Principal::User(u) => k.user(u, |u| {
            if let Some(a) = &mut u.attached {
                f(a)
            }
        }),
        Principal::Group(g) => k.group(g, |g| {
            if let Some(a) = &mut g.attached {
                f(a)
            }
        }),
        Principal::Role(r) => k.role(r, |r| {
            if let Some(a) = &mut r.attached {
                f(a)
            }
        }),
    }
}

fn inline(
    k: &mut Known,
    principal: Principal<'_>,
    f: impl FnOnce(&mut BTreeMap<String, Option<String>>),
) {
    match principal {
        Principal::User(u) => k.user(u, |u| {
            if let Some(a) = &mut u.inline {
                f(a)
            }
        }),
        Principal::Group(g) => k.group(g, |g| {
            if let Some(a) = &mut g.inline {
                f(a)
            }
        }),
        Principal::Role(r) => k.role(r, |r| {
            if let Some(a) = &mut r.inline {
                f(a)
            }
        }),
    }
}

fn is_not_found<T>(r: &IamResult<T>) -> bool {
    matches!(r, Err(crate::iam::IamError::NotFound(_)))
}

#[async_trait]
impl Iam for KnowingIam {
    async fn account(&self) -> IamResult<(String, String)> {
        self.inner.account().await
    }
    async fn account_alias(&self) -> IamResult<Option<String>> {
        self.inner.account_alias().await
    }
    async fn password_policy(&self) -> IamResult<Option<PasswordPolicy>> {
        self.inner.password_policy().await
    }
    async fn account_snapshot(&self) -> IamResult<AccountSnapshot> {
        self.inner.account_snapshot().await
    }
    async fn account_password_policy(
        &self,
    ) -> IamResult<Option<crate::iam::AccountPasswordPolicySpec>> {
        self.inner.account_password_policy().await
    }
    async fn update_account_password_policy(
        &self,
        policy: &crate::iam::AccountPasswordPolicySpec,
    ) -> IamResult<()> {
        self.inner.update_account_password_policy(policy).await
    }
    async fn delete_account_password_policy(&self) -> IamResult<()> {
        self.inner.delete_account_password_policy().await
    }
    async fn create_account_alias(&self, alias: &str) -> IamResult<()> {
        self.inner.create_account_alias(alias).await
    }
    async fn delete_account_alias(&self, alias: &str) -> IamResult<()> {
        self.inner.delete_account_alias(alias).await
    }
    async fn account_summary(&self) -> IamResult<std::collections::BTreeMap<String, i32>> {
        self.inner.account_summary().await
    }

    async fn get_policy(&self, arn: &str) -> IamResult<PolicyInfo> {
        let r = self.inner.get_policy(arn).await;
        match &r {
            Ok(p) => self.note(|k| {
                k.policy(arn, |known| {
                    if known.default_version.as_deref() != Some(&p.default_version_id) {
                        known.default_version = Some(p.default_version_id.clone());
                        known.document = None;
                    }
                })
            }),
            Err(_) if is_not_found(&r) => self.note(|k| k.policy_gone(arn, None)),
            Err(_) => {}
        }
        r
    }
    async fn create_policy(
        &self,
        name: &str,
        path: &str,
        description: Option<&str>,
        document: &str,
        tags: &BTreeMap<String, String>,
    ) -> IamResult<PolicyInfo> {
        let r = self
            .inner
            .create_policy(name, path, description, document, tags)
            .await;
        // The ARN is known only from the answer; a failed create changed nothing known.
        if let Ok(p) = &r {
            self.wrote_policy(&p.arn, &r, |k| {
                k.policy(&p.arn, |known| {
                    known.default_version = Some(p.default_version_id.clone());
                    known.document = Some(document.to_string());
                })
            });
        }
        r
    }
    async fn list_policy_versions(&self, arn: &str) -> IamResult<Vec<PolicyVersion>> {
        self.inner.list_policy_versions(arn).await
    }
    async fn get_policy_version(&self, arn: &str, version_id: &str) -> IamResult<String> {
        let r = self.inner.get_policy_version(arn, version_id).await;
        if let Ok(doc) = &r {
            self.note(|k| {
                k.policy(arn, |known| {
                    if known.default_version.as_deref() == Some(version_id) {
                        known.document = Some(doc.clone());
                    }
                })
            });
        }
        r
    }
    async fn create_policy_version(&self, arn: &str, document: &str) -> IamResult<String> {
        let r = self.inner.create_policy_version(arn, document).await;
        // The port sets the new version as the default.
        self.wrote_policy(arn, &r, |k| {
            k.policy(arn, |known| {
                known.default_version = r.as_ref().ok().cloned();
                known.document = Some(document.to_string());
            })
        });
        r
    }
    async fn delete_policy_version(&self, arn: &str, version_id: &str) -> IamResult<()> {
        // A non-default version: not part of the fingerprint.
        self.inner.delete_policy_version(arn, version_id).await
    }
    async fn tag_policy(&self, arn: &str, tags: &BTreeMap<String, String>) -> IamResult<()> {
        self.inner.tag_policy(arn, tags).await
    }
    async fn untag_policy(&self, arn: &str, keys: &[String]) -> IamResult<()> {
        self.inner.untag_policy(arn, keys).await
    }
    async fn list_entities_for_policy(&self, arn: &str) -> IamResult<PolicyEntities> {
        self.inner.list_entities_for_policy(arn).await
    }
    async fn detach_role_policy(&self, role: &str, arn: &str) -> IamResult<()> {
        self.inner.detach_role_policy(role, arn).await
    }
    async fn delete_policy(&self, arn: &str) -> IamResult<()> {
        let r = self.inner.delete_policy(arn).await;
        match &r {
            Ok(()) => self.note(|k| k.policy_gone(arn, Some(Instant::now()))),
            Err(_) => self.note(|k| k.forget_policy(arn)),
        }
        r
    }

    async fn list_attached_policies(&self, principal: Principal<'_>) -> IamResult<Vec<String>> {
        let r = self.inner.list_attached_policies(principal).await;
        if let Ok(arns) = &r {
            self.note(|k| match principal {
                Principal::User(u) => k.user(u, |u| u.attached = Some(set(arns))),
                Principal::Group(g) => k.group(g, |g| g.attached = Some(set(arns))),
                Principal::Role(r) => k.role(r, |r| r.attached = Some(set(arns))),
            });
        }
        r
    }
    async fn attach_policy(&self, principal: Principal<'_>, arn: &str) -> IamResult<()> {
        let r = self.inner.attach_policy(principal, arn).await;
        self.wrote(principal, &r, |k, _| {
            attached(k, principal, |a| {
                a.insert(arn.to_string());
            })
        });
        r
    }
    async fn detach_policy(&self, principal: Principal<'_>, arn: &str) -> IamResult<()> {
        let r = self.inner.detach_policy(principal, arn).await;
        self.wrote(principal, &r, |k, _| {
            attached(k, principal, |a| {
                a.remove(arn);
            })
        });
        r
    }
    async fn list_inline_policies(&self, principal: Principal<'_>) -> IamResult<Vec<String>> {
        let r = self.inner.list_inline_policies(principal).await;
        if let Ok(names) = &r {
            self.note(|k| {
                let old = match principal {
                    Principal::User(u) => k
                        .users
                        .get(&u.to_lowercase())
                        .and_then(|e| e.state.as_ref().and_then(|u| u.inline.clone())),
                    Principal::Group(g) => k
                        .groups
                        .get(&g.to_lowercase())
                        .and_then(|e| e.state.as_ref().and_then(|g| g.inline.clone())),
                    Principal::Role(r) => k
                        .roles
                        .get(&r.to_lowercase())
                        .and_then(|e| e.state.as_ref().and_then(|r| r.inline.clone())),
                }
                .unwrap_or_default();
                // Names listed now; documents kept only where already known for that name
                // (a later get or put refreshes them).
                let now: BTreeMap<String, Option<String>> = names
                    .iter()
                    .map(|n| (n.clone(), old.get(n).cloned().flatten()))
                    .collect();
                match principal {
                    Principal::User(u) => k.user(u, |u| u.inline = Some(now)),
                    Principal::Group(g) => k.group(g, |g| g.inline = Some(now)),
                    Principal::Role(r) => k.role(r, |r| r.inline = Some(now)),
                }
            });
        }
        r
    }
    async fn get_inline_policy(&self, principal: Principal<'_>, name: &str) -> IamResult<String> {
        let r = self.inner.get_inline_policy(principal, name).await;
        if let Ok(doc) = &r {
            self.note(|k| {
                inline(k, principal, |i| {
                    i.insert(name.to_string(), Some(doc.clone()));
                })
            });
        }
        r
    }
    async fn put_inline_policy(
        &self,
        principal: Principal<'_>,
        name: &str,
        document: &str,
    ) -> IamResult<()> {
        let r = self
            .inner
            .put_inline_policy(principal, name, document)
            .await;
        self.wrote(principal, &r, |k, _| {
            inline(k, principal, |i| {
                i.insert(name.to_string(), Some(document.to_string()));
            })
        });
        r
    }
    async fn delete_inline_policy(&self, principal: Principal<'_>, name: &str) -> IamResult<()> {
        let r = self.inner.delete_inline_policy(principal, name).await;
        self.wrote(principal, &r, |k, _| {
            inline(k, principal, |i| {
                i.remove(name);
            })
        });
        r
    }

    async fn get_group(&self, name: &str) -> IamResult<GroupInfo> {
        let r = self.inner.get_group(name).await;
        match &r {
            Ok(g) => self.note(|k| k.group(name, |known| known.path = Some(g.path.clone()))),
            Err(_) if is_not_found(&r) => self.note(|k| k.group_gone(name, None)),
            Err(_) => {}
        }
        r
    }
    async fn create_group(&self, name: &str, path: &str) -> IamResult<GroupInfo> {
        let r = self.inner.create_group(name, path).await;
        self.wrote(Principal::Group(name), &r, |k, g| {
            k.group(g, |known| *known = KnownGroup::created(path))
        });
        r
    }
    async fn delete_group(&self, name: &str) -> IamResult<()> {
        let r = self.inner.delete_group(name).await;
        match &r {
            Ok(()) => self.note(|k| k.group_gone(name, Some(Instant::now()))),
            Err(_) => self.note(|k| k.forget_group(name)),
        }
        r
    }

    async fn get_user(&self, name: &str) -> IamResult<UserInfo> {
        let r = self.inner.get_user(name).await;
        match &r {
            Ok(u) => self.note(|k| {
                k.user(name, |known| {
                    known.path = Some(u.path.clone());
                    known.tags = Some(u.tags.clone());
                    known.boundary = Some(u.permissions_boundary.clone());
                })
            }),
            Err(_) if is_not_found(&r) => self.note(|k| k.user_gone(name, None)),
            Err(_) => {}
        }
        r
    }
    async fn create_user(
        &self,
        name: &str,
        path: &str,
        tags: &BTreeMap<String, String>,
        permissions_boundary: Option<&str>,
    ) -> IamResult<UserInfo> {
        let r = self
            .inner
            .create_user(name, path, tags, permissions_boundary)
            .await;
        self.wrote(Principal::User(name), &r, |k, u| {
            k.user(u, |known| {
                *known = KnownUser::created(path, tags, permissions_boundary)
            })
        });
        r
    }
    async fn delete_user(&self, name: &str) -> IamResult<()> {
        let r = self.inner.delete_user(name).await;
        match &r {
            Ok(()) => self.note(|k| k.user_gone(name, Some(Instant::now()))),
            Err(_) => self.note(|k| k.forget_user(name)),
        }
        r
    }
    async fn tag_user(&self, name: &str, tags: &BTreeMap<String, String>) -> IamResult<()> {
        let r = self.inner.tag_user(name, tags).await;
        self.wrote(Principal::User(name), &r, |k, u| {
            k.user(u, |known| {
                if let Some(t) = &mut known.tags {
                    t.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            })
        });
        r
    }
    async fn untag_user(&self, name: &str, keys: &[String]) -> IamResult<()> {
        let r = self.inner.untag_user(name, keys).await;
        self.wrote(Principal::User(name), &r, |k, u| {
            k.user(u, |known| {
                if let Some(t) = &mut known.tags {
                    t.retain(|key, _| !keys.contains(key));
                }
            })
        });
        r
    }
    async fn put_permissions_boundary(&self, user: &str, arn: &str) -> IamResult<()> {
        let r = self.inner.put_permissions_boundary(user, arn).await;
        self.wrote(Principal::User(user), &r, |k, u| {
            k.user(u, |known| known.boundary = Some(Some(arn.to_string())))
        });
        r
    }
    async fn delete_permissions_boundary(&self, user: &str) -> IamResult<()> {
        let r = self.inner.delete_permissions_boundary(user).await;
        self.wrote(Principal::User(user), &r, |k, u| {
            k.user(u, |known| known.boundary = Some(None))
        });
        r
    }
    async fn list_groups_for_user(&self, user: &str) -> IamResult<Vec<String>> {
        let r = self.inner.list_groups_for_user(user).await;
        if let Ok(groups) = &r {
            self.note(|k| k.user(user, |known| known.groups = Some(set(groups))));
        }
        r
    }
    async fn add_user_to_group(&self, user: &str, group: &str) -> IamResult<()> {
        let r = self.inner.add_user_to_group(user, group).await;
        self.wrote(Principal::User(user), &r, |k, u| {
            k.user(u, |known| {
                if let Some(g) = &mut known.groups {
                    g.insert(group.to_string());
                }
            })
        });
        r
    }
    async fn remove_user_from_group(&self, user: &str, group: &str) -> IamResult<()> {
        let r = self.inner.remove_user_from_group(user, group).await;
        self.wrote(Principal::User(user), &r, |k, u| {
            k.user(u, |known| {
                if let Some(g) = &mut known.groups {
                    g.remove(group);
                }
            })
        });
        r
    }

    // Credentials are not in the authorization details: nothing to record.
    async fn list_access_keys(&self, user: &str) -> IamResult<Vec<AccessKeyInfo>> {
        self.inner.list_access_keys(user).await
    }
    async fn create_access_key(&self, user: &str) -> IamResult<NewAccessKey> {
        self.inner.create_access_key(user).await
    }
    async fn update_access_key(&self, user: &str, id: &str, status: KeyStatus) -> IamResult<()> {
        self.inner.update_access_key(user, id, status).await
    }
    async fn delete_access_key(&self, user: &str, id: &str) -> IamResult<()> {
        self.inner.delete_access_key(user, id).await
    }
    async fn has_login_profile(&self, user: &str) -> IamResult<bool> {
        self.inner.has_login_profile(user).await
    }
    async fn list_mfa_devices(&self, user: &str) -> IamResult<Vec<MfaDevice>> {
        self.inner.list_mfa_devices(user).await
    }
    async fn create_login_profile(
        &self,
        user: &str,
        password: &SecretString,
        reset_required: bool,
    ) -> IamResult<()> {
        self.inner
            .create_login_profile(user, password, reset_required)
            .await
    }
    async fn update_login_profile(
        &self,
        user: &str,
        password: &SecretString,
        reset_required: bool,
    ) -> IamResult<()> {
        self.inner
            .update_login_profile(user, password, reset_required)
            .await
    }
    async fn delete_login_profile(&self, user: &str) -> IamResult<()> {
        self.inner.delete_login_profile(user).await
    }
    async fn delete_other_credentials(&self, user: &str) -> IamResult<()> {
        self.inner.delete_other_credentials(user).await
    }

    // Roles: what the authorization details report of them is recorded as for users;
    // description and session length are not reported, so not recorded.
    async fn caller_arn(&self) -> IamResult<String> {
        self.inner.caller_arn().await
    }
    async fn get_role(&self, name: &str) -> IamResult<RoleInfo> {
        let r = self.inner.get_role(name).await;
        match &r {
            Ok(info) => self.note(|k| {
                k.role(name, |known| {
                    known.path = Some(info.path.clone());
                    known.trust = Some(info.trust_policy.clone());
                    known.tags = Some(info.tags.clone());
                    known.boundary = Some(info.permissions_boundary.clone());
                })
            }),
            Err(_) if is_not_found(&r) => self.note(|k| k.role_gone(name, None)),
            Err(_) => {}
        }
        r
    }
    async fn create_role(&self, role: &NewRole<'_>) -> IamResult<RoleInfo> {
        let r = self.inner.create_role(role).await;
        self.wrote(Principal::Role(role.name), &r, |k, name| {
            k.role(name, |known| {
                *known = KnownRole::created(
                    role.path,
                    role.trust_policy,
                    role.tags,
                    role.permissions_boundary,
                )
            })
        });
        r
    }
    async fn update_role(
        &self,
        name: &str,
        description: &str,
        max_session_duration: i32,
    ) -> IamResult<()> {
        self.inner
            .update_role(name, description, max_session_duration)
            .await
    }
    async fn update_assume_role_policy(&self, name: &str, document: &str) -> IamResult<()> {
        let r = self.inner.update_assume_role_policy(name, document).await;
        self.wrote(Principal::Role(name), &r, |k, name| {
            k.role(name, |known| known.trust = Some(document.to_string()))
        });
        r
    }
    async fn tag_role(&self, name: &str, tags: &BTreeMap<String, String>) -> IamResult<()> {
        let r = self.inner.tag_role(name, tags).await;
        self.wrote(Principal::Role(name), &r, |k, name| {
            k.role(name, |known| {
                if let Some(t) = &mut known.tags {
                    t.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            })
        });
        r
    }
    async fn untag_role(&self, name: &str, keys: &[String]) -> IamResult<()> {
        let r = self.inner.untag_role(name, keys).await;
        self.wrote(Principal::Role(name), &r, |k, name| {
            k.role(name, |known| {
                if let Some(t) = &mut known.tags {
                    t.retain(|key, _| !keys.contains(key));
                }
            })
        });
        r
    }
    async fn put_role_permissions_boundary(&self, role: &str, arn: &str) -> IamResult<()> {
        let r = self.inner.put_role_permissions_boundary(role, arn).await;
        self.wrote(Principal::Role(role), &r, |k, name| {
            k.role(name, |known| known.boundary = Some(Some(arn.to_string())))
        });
        r
    }
    async fn delete_role_permissions_boundary(&self, role: &str) -> IamResult<()> {
        let r = self.inner.delete_role_permissions_boundary(role).await;
        self.wrote(Principal::Role(role), &r, |k, name| {
            k.role(name, |known| known.boundary = Some(None))
        });
        r
    }
    async fn delete_role(&self, name: &str) -> IamResult<()> {
        let r = self.inner.delete_role(name).await;
        match &r {
            Ok(()) => self.note(|k| k.role_gone(name, Some(Instant::now()))),
            Err(_) => self.note(|k| k.forget_role(name)),
        }
        r
    }
    async fn get_instance_profile(&self, name: &str) -> IamResult<InstanceProfileInfo> {
        self.inner.get_instance_profile(name).await
    }
    async fn create_instance_profile(
        &self,
        name: &str,
        path: &str,
    ) -> IamResult<InstanceProfileInfo> {
        self.inner.create_instance_profile(name, path).await
    }
    async fn delete_instance_profile(&self, name: &str) -> IamResult<()> {
        self.inner.delete_instance_profile(name).await
    }
    async fn add_role_to_instance_profile(&self, profile: &str, role: &str) -> IamResult<()> {
        let r = self.inner.add_role_to_instance_profile(profile, role).await;
        self.wrote(Principal::Role(role), &r, |k, name| {
            k.role(name, |known| {
                if let Some(p) = &mut known.profiles {
                    p.insert(profile.to_string());
                }
            })
        });
        r
    }
    async fn remove_role_from_instance_profile(&self, profile: &str, role: &str) -> IamResult<()> {
        let r = self
            .inner
            .remove_role_from_instance_profile(profile, role)
            .await;
        self.wrote(Principal::Role(role), &r, |k, name| {
            k.role(name, |known| {
                if let Some(p) = &mut known.profiles {
                    p.remove(profile);
                }
            })
        });
        r
    }
    async fn list_instance_profiles_for_role(
        &self,
        role: &str,
    ) -> IamResult<Vec<InstanceProfileInfo>> {
        let r = self.inner.list_instance_profiles_for_role(role).await;
        if let Ok(profiles) = &r {
            self.note(|k| {
                k.role(role, |known| {
                    known.profiles = Some(profiles.iter().map(|p| p.name.clone()).collect())
                })
            });
        }
        r
    }

    // STS: a session changes nothing the drift scan compares.
    async fn assume_role_session(
        &self,
        role_arn: &str,
        session_name: &str,
        duration: std::time::Duration,
    ) -> IamResult<SessionCredentials> {
        self.inner
            .assume_role_session(role_arn, session_name, duration)
            .await
    }
}
