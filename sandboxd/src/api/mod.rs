//! The gRPC API on the Unix socket: the `sandbox.v1.Sandbox` service
//! ([`Api`]), plus health and reflection ([`server`]).
//!
//! Every handler takes the caller from the connection ([`Caller`] as tonic
//! connect info), never from the request.

pub mod approvals;
pub mod attach;
mod audit;
mod exec;
mod profiles;
mod requests;
pub mod server;

use crate::audit::AuditLog;
use crate::identity::Caller;
use crate::plan::DaemonPaths;
use crate::policy::PolicyStore;
use crate::registry::{Registry, RegistryError};
use crate::supervisor::{caller_signal, Control};
use sandbox_proto::v1 as pb;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The daemon state every request handler shares.
#[derive(Debug, Clone)]
pub struct Api {
    pub policies: Arc<PolicyStore>,
    pub registry: Arc<Registry>,
    pub paths: DaemonPaths,
    /// The admin group's gid (`None`: no admins).
    pub admin_gid: Option<u32>,
    /// This binary, re-executed as each sandbox's init.
    pub init_exe: PathBuf,
    /// Where every exec's start, end or refusal is recorded.
    pub audit: Arc<AuditLog>,
    /// Resolver, inspection CA and secrets of allowlist sandboxes.
    pub net: crate::net::Services,
    /// Session answers and saved amendments of command and escalation approvals.
    pub approvals: Arc<approvals::Approvals>,
}

/// The caller of a request, as the connection's peer credentials say.
fn caller<T>(req: &Request<T>) -> Result<Caller, Status> {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no peer credentials on this connection"))
}

/// Most bytes of one piece of a request (a name, a path, a word) an error
/// message repeats. An error's message travels in a header
/// (`grpc-message`, percent-encoded: up to three bytes for one), and
/// clients take at most 16 KiB of headers: past that, a caller would get a
/// transport error instead of the reason.
const ERROR_FIELD_BYTES: usize = 1 << 10;

/// `text` from the caller's request, as an error message repeats it: bounded.
fn caller_text(text: &str) -> String {
    crate::audit::bounded_text(text, ERROR_FIELD_BYTES)
}

/// `status` with its message bounded, so that it reaches the caller
/// whatever caller text its reason repeats (a path deep in a policy error,
/// say): cut, it still starts with the reason.
fn bounded(status: Status) -> Status {
    let message = crate::audit::bounded_text(status.message(), crate::audit::TEXT_BYTES);
    match message.len() == status.message().len() {
        true => status,
        false => Status::new(status.code(), message),
    }
}

fn registry_status(e: RegistryError) -> Status {
    match e {
        RegistryError::Full { .. }
        | RegistryError::UserFull { .. }
        | RegistryError::Attachers { .. }
        | RegistryError::Undelivered { .. } => Status::resource_exhausted(e.to_string()),
        RegistryError::NotFound(_) | RegistryError::Gone(_) => Status::not_found(e.to_string()),
        RegistryError::NotOwner { .. } => Status::permission_denied(e.to_string()),
        RegistryError::Closing => Status::unavailable(e.to_string()),
    }
}

fn unix_ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[tonic::async_trait]
impl pb::sandbox_server::Sandbox for Api {
    type ExecStream = exec::ExecStream;

    async fn exec(
        &self,
        request: Request<tonic::Streaming<pb::ExecRequest>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let caller = caller(&request)?;
        self.run_exec(caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let caller = caller(&request)?;
        // Non-admins asking for everything get their own, as if they had not asked.
        let all = request.get_ref().all && caller.is_admin(self.admin_gid);
        let sandboxes = self
            .registry
            .list((!all).then_some(caller.uid))
            .into_iter()
            .map(|i| pb::SandboxInfo {
                id: i.id,
                uid: i.uid,
                pid: i.pid.max(0) as u32,
                argv: i.argv,
                cwd: i.cwd.display().to_string(),
                profile: i.profile,
                session: i.session,
                started_unix_ms: unix_ms(i.started),
                caller_pid: i.caller_pid.unwrap_or(0).max(0) as u32,
            })
            .collect();
        Ok(Response::new(pb::ListResponse { sandboxes }))
    }

    async fn kill(
        &self,
        request: Request<pb::KillRequest>,
    ) -> Result<Response<pb::KillResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let killed = || format!("killed by uid {}", caller.uid);
        let control = match req.signal {
            0 => Ok(Control::Kill(killed())),
            s => caller_signal(s, killed),
        };
        let admin = caller.is_admin(self.admin_gid);
        // Recorded either way, a kill before it is sent.
        let mut record = json!({
            "id": req.id,
            "uid": caller.uid,
            "gid": caller.gid,
            "caller_pid": caller.pid,
            "signal": req.signal,
        });
        // A signal refused, or a sandbox the caller may not signal: the rule and status.
        let target = control
            .map_err(|e| ("signal", Status::invalid_argument(e.to_string())))
            .and_then(|control| {
                let target =
                    self.registry
                        .target(&req.id, caller.uid, admin)
                        .map_err(|e| match e {
                            RegistryError::NotOwner { .. } => ("owner", registry_status(e)),
                            e => ("id", registry_status(e)),
                        })?;
                Ok((target, control))
            });
        let (target, control) = match target {
            Ok(t) => t,
            Err((rule, status)) => {
                tracing::info!(uid = caller.uid, error = %status.message(), "kill refused");
                record["id"] =
                    crate::audit::bounded_text(&req.id, crate::audit::REFUSED_ID_BYTES).into();
                record["request"] = "kill".into();
                record["rule"] = rule.into();
                record["message"] =
                    crate::audit::bounded_text(status.message(), crate::audit::TEXT_BYTES).into();
                if let Err(e) = self.audit.append_counted("refusal", record).await {
                    tracing::error!(uid = caller.uid, error = %e, "recording a refused kill");
                }
                return Err(status);
            }
        };
        record["owner"] = target.info.uid.into();
        record["decision"] = "allow".into();
        // Recorded and sent in a task of its own: a client that goes away
        // in between cannot leave a recorded kill unsent.
        let audit = Arc::clone(&self.audit);
        let id = req.id.clone();
        let sent = tokio::spawn(async move {
            if let Err(e) = audit.append("kill", record).await {
                return Err(Status::failed_precondition(format!(
                    "sandbox {id} not signalled, as it cannot be audited: {e}"
                )));
            }
            target.send(control).await.map_err(registry_status)
        });
        match sent.await {
            Ok(Ok(info)) => {
                tracing::info!(uid = caller.uid, id = %info.id, owner = info.uid, signal = req.signal, "kill");
                Ok(Response::new(pb::KillResponse {}))
            }
            Ok(Err(status)) => Err(status),
            Err(e) => Err(Status::internal(format!("the kill's task failed: {e}"))),
        }
    }

    type AttachStream = attach::AttachStream;

    async fn attach(
        &self,
        request: Request<pb::AttachRequest>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        self.attach_stream(request).await.map(Response::new)
    }

    async fn list_profiles(
        &self,
        request: Request<pb::ListProfilesRequest>,
    ) -> Result<Response<pb::ListProfilesResponse>, Status> {
        let caller = caller(&request)?;
        Ok(Response::new(self.profile_list(&caller)))
    }

    async fn get_profile(
        &self,
        request: Request<pb::GetProfileRequest>,
    ) -> Result<Response<pb::GetProfileResponse>, Status> {
        let caller = caller(&request)?;
        self.profile_show(&caller, &request.get_ref().name)
            .map(Response::new)
            .map_err(bounded)
    }

    type AuditStream = audit::AuditStream;

    async fn audit(
        &self,
        request: Request<pb::AuditRequest>,
    ) -> Result<Response<Self::AuditStream>, Status> {
        let caller = caller(&request)?;
        self.audit_stream(&caller, request.into_inner())
            .map(Response::new)
            .map_err(bounded)
    }

    async fn check_policy(
        &self,
        request: Request<pb::CheckPolicyRequest>,
    ) -> Result<Response<pb::CheckPolicyResponse>, Status> {
        let caller = caller(&request)?;
        // It reads the caller's profiles and, as the caller, PATH's directories.
        let api = self.clone();
        tokio::task::spawn_blocking(move || api.policy_check(&caller, request.into_inner()))
            .await
            .map_err(|e| Status::internal(format!("checking the policy failed: {e}")))?
            .map(Response::new)
            .map_err(bounded)
    }
}
