//! ListProfiles, GetProfile and CheckPolicy: reading the policy store, never acting.

use super::Api;
use crate::identity::Caller;
use crate::policy::{check_command, check_path, check_url, Access, Decision, PolicyStore, Profile};
use pb::check_policy_request::Query;
use sandbox_proto::v1 as pb;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tonic::Status;

fn summary(p: &Profile) -> pb::ProfileSummary {
    pb::ProfileSummary {
        name: p.name.clone(),
        description: p.description.clone(),
        source: p.source.clone(),
    }
}

impl Api {
    /// The profile `name`, or NotFound naming it.
    pub(super) fn profile(&self, name: &str) -> Result<&Profile, Status> {
        self.policies.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.policies.profiles().map(|p| p.name.as_str()).collect();
            Status::not_found(format!(
                "no profile named {name:?} (known: {})",
                known.join(", ")
            ))
        })
    }

    pub(super) fn profile_list(&self) -> pb::ListProfilesResponse {
        pb::ListProfilesResponse {
            profiles: self.policies.profiles().map(summary).collect(),
            default_profile: PolicyStore::DEFAULT.to_string(),
        }
    }

    pub(super) fn profile_show(&self, name: &str) -> Result<pb::GetProfileResponse, Status> {
        let profile = self.profile(name)?;
        let toml = self
            .policies
            .render(name)
            .ok_or_else(|| Status::internal(format!("profile {name:?} could not be rendered")))?;
        Ok(pb::GetProfileResponse {
            summary: Some(summary(profile)),
            toml,
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
        let profile = self.profile(name)?;
        let cwd = if req.cwd.is_empty() {
            PathBuf::from("/")
        } else {
            PathBuf::from(&req.cwd)
        };
        if !cwd.is_absolute() {
            return Err(Status::invalid_argument(format!(
                "cwd {:?} is not an absolute path",
                req.cwd
            )));
        }
        // No environment comes with the request: `{home}` may come from the caller's own.
        let env: BTreeMap<String, String> = caller
            .pid
            .and_then(crate::plan::process_home)
            .map(|h| ("HOME".to_string(), h))
            .into_iter()
            .collect();
        let ctx = crate::plan::exec_context(caller, cwd.clone(), env, BTreeMap::new());
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
            Some(Query::Cmd(c)) if !c.argv.is_empty() => check_command(profile, &c.argv),
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
