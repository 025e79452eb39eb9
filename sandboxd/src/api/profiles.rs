//! ListProfiles, GetProfile and CheckPolicy: reading the policy store and
//! the caller's own user profiles, never acting.

use super::{caller_text, Api};
use crate::identity::{Account, Caller};
use crate::plan::caller_home;
use crate::policy::user::{UserProfiles, USER_DIR};
use crate::policy::{
    check_command, check_path, check_url, resolve, Access, Decision, Narrowing, PolicyStore,
    Profile,
};
use crate::programs::Programs;
use pb::check_policy_request::Query;
use sandbox_proto::v1 as pb;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tonic::Status;

/// The `HOME` of a caller's process, for requests that carry no environment.
fn process_home(caller: &Caller) -> Option<String> {
    caller.pid.and_then(crate::plan::process_home)
}

fn summary(p: &Profile) -> pb::ProfileSummary {
    pb::ProfileSummary {
        name: p.name.clone(),
        description: p.description.clone(),
        source: p.source.clone(),
    }
}

impl Api {
    /// The profile `name` for `caller`: a managed one, else one of the
    /// caller's user profiles (read now, under their home: see
    /// [`caller_home`]). NotFound names the known ones; a refused user
    /// profile names its file and line.
    pub(super) fn profile(
        &self,
        caller: &Caller,
        account: Option<&Account>,
        env_home: Option<&str>,
        name: &str,
    ) -> Result<Cow<'_, Profile>, Status> {
        if let Some(p) = self.policies.get(name) {
            return Ok(Cow::Borrowed(p));
        }
        let home = caller_home(caller, account, env_home);
        let users = UserProfiles {
            store: &self.policies,
            uid: caller.uid,
            home: &home,
        };
        match users.get(name) {
            Ok(Some(p)) => Ok(Cow::Owned(p)),
            Ok(None) => {
                let known: Vec<&str> = self.policies.profiles().map(|p| p.name.as_str()).collect();
                let name = caller_text(name);
                Err(Status::not_found(format!(
                    "no profile named {name:?} (known: {}; user profiles: {}/{USER_DIR}/{name}.toml)",
                    known.join(", "),
                    home.display()
                )))
            }
            Err(e) => Err(Status::failed_precondition(format!(
                "user profile {}: {e}",
                caller_text(name)
            ))),
        }
    }

    pub(super) fn profile_list(&self, caller: &Caller) -> pb::ListProfilesResponse {
        let mut profiles: Vec<pb::ProfileSummary> = self.policies.profiles().map(summary).collect();
        let account = Account::of(caller.uid);
        let home = caller_home(caller, account.as_ref(), process_home(caller).as_deref());
        let users = UserProfiles {
            store: &self.policies,
            uid: caller.uid,
            home: &home,
        };
        // A refused file is listed with its error rather than hiding the others.
        let refused = |source: String, e: &dyn std::fmt::Display| pb::ProfileSummary {
            name: String::new(),
            description: format!("refused: {e}"),
            source,
        };
        match users.all() {
            Ok(all) => profiles.extend(all.into_iter().map(|(name, loaded)| match loaded {
                Ok(p) => summary(&p),
                Err(e) => pb::ProfileSummary {
                    name: name.clone(),
                    ..refused(format!("{}/{USER_DIR}/{name}.toml", home.display()), &e)
                },
            })),
            Err(e) => profiles.push(refused(format!("{}/{USER_DIR}", home.display()), &e)),
        }
        pb::ListProfilesResponse {
            profiles,
            default_profile: PolicyStore::DEFAULT.to_string(),
        }
    }

    pub(super) fn profile_show(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<pb::GetProfileResponse, Status> {
        let account = Account::of(caller.uid);
        let profile = self.profile(
            caller,
            account.as_ref(),
            process_home(caller).as_deref(),
            name,
        )?;
        Ok(pb::GetProfileResponse {
            summary: Some(summary(&profile)),
            toml: crate::policy::user::render(&profile),
        })
    }

    pub(super) fn policy_check(
        &self,
        caller: &Caller,
        req: pb::CheckPolicyRequest,
    ) -> Result<pb::CheckPolicyResponse, Status> {
        let name = if req.profile.is_empty() {
            PolicyStore::DEFAULT
        } else {
            req.profile.as_str()
        };
        let env_home = process_home(caller);
        let account = Account::of(caller.uid);
        let profile = self.profile(caller, account.as_ref(), env_home.as_deref(), name)?;
        let profile = &*profile;
        let cwd = if req.cwd.is_empty() {
            PathBuf::from("/")
        } else {
            PathBuf::from(&req.cwd)
        };
        if !cwd.is_absolute() {
            return Err(Status::invalid_argument(format!(
                "cwd {:?} is not an absolute path",
                caller_text(&req.cwd)
            )));
        }
        // No environment comes with the request: `{home}` may come from the caller's own.
        let env: BTreeMap<String, String> = env_home
            .map(|h| ("HOME".to_string(), h))
            .into_iter()
            .collect();
        let ctx =
            crate::plan::exec_context(caller, account.as_ref(), cwd.clone(), env, BTreeMap::new());
        let path = |p: &str| {
            let p = PathBuf::from(p);
            if p.is_absolute() {
                p
            } else {
                cwd.join(p)
            }
        };
        let decision: Decision = match req.query {
            Some(Query::Read(p)) => check_path(profile, &ctx, &path(&p), Access::Read),
            Some(Query::Write(p)) => check_path(profile, &ctx, &path(&p), Access::Write),
            Some(Query::Url(u)) => check_url(profile, &u),
            Some(Query::Cmd(c)) if !c.argv.is_empty() => {
                // Bare names as an exec in `cwd` finds them with the default PATH.
                let programs = resolve(profile, &ctx, &Narrowing::default())
                    .ok()
                    .map(|p| Programs::new(&p, caller, &[]));
                let lookup = |n: &str| programs.as_ref().and_then(|p| p.made_by_sandbox(n));
                check_command(profile, &c.argv, &lookup)
            }
            Some(Query::Cmd(_)) => return Err(Status::invalid_argument("cmd: empty command")),
            None => {
                return Err(Status::invalid_argument(
                    "one of read, write, url or cmd is required",
                ))
            }
        };
        Ok(pb::CheckPolicyResponse {
            decision: decision.verdict.as_str().to_string(),
            rule: decision.rule,
            reason: decision.reason,
        })
    }
}
