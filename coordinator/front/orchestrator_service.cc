#include "coordinator/front/orchestrator_service.h"

#include <memory>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/cancellation.h"
#include "common/grpc_status.h"
#include "common/queued_write_reactor.h"
#include "common/tls.h"

namespace loom {
namespace {

std::string Authorization(grpc::ServerContextBase* context) {
  const auto& md = context->client_metadata();
  auto it = md.find("authorization");
  return it == md.end() ? std::string() : std::string(it->second.data(), it->second.size());
}

// Under mutual TLS every caller has a verified certificate; only a client's may call the
// Orchestrator (a device's certificate proves a device, not a client: it must not read the
// mesh or spend). Without client certificates there is nothing to check here.
absl::Status CheckClientRole(grpc::ServerContextBase* context) {
  std::shared_ptr<const grpc::AuthContext> auth = context->auth_context();
  const PeerIdentity peer = auth ? PeerOf(*auth) : PeerIdentity{};
  if (!peer.verified || peer.role == kRoleClient) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      "the certificate of '", peer.name, "' has role '", peer.role,
      "'; the Orchestrator serves client certificates (OU=", kRoleClient, ") only"));
}

// The request as the runner sees it: charged to the authenticated client.
absl::StatusOr<v1::CompleteRequest> Authenticated(const Authenticator* auth,
                                                  const std::string& authorization,
                                                  const v1::CompleteRequest& request) {
  absl::StatusOr<std::string> client = auth->ClientFor(authorization);
  if (!client.ok()) return client.status();
  v1::CompleteRequest copy = request;
  copy.set_client_id(*client);
  copy.clear_request_id_assigned();
  return copy;
}

// StreamComplete: the runner's events are queued and written one at a time.
class StreamReactor : public QueuedWriteReactor<v1::CompleteEvent> {
 public:
  StreamReactor(grpc::CallbackServerContext* context, const v1::CompleteRequest* request,
                RequestRunner* runner, const Authenticator* auth, Admission* admission,
                ThreadCache* threads) {
    const absl::Time deadline = absl::FromChrono(context->deadline());
    const absl::Time arrived = runner->clock()->Now();
    threads->Run([this, request, runner, auth, admission, deadline, arrived,
                  authorization = Authorization(context), role = CheckClientRole(context)] {
      absl::StatusOr<v1::CompleteRequest> req =
          role.ok() ? Authenticated(auth, authorization, *request)
                    : absl::StatusOr<v1::CompleteRequest>(role);
      if (!req.ok()) {
        Close(ToGrpcStatus(req.status()));
        return;
      }
      absl::StatusOr<Admission::Ticket> ticket =
          admission->Acquire(req->client_id(), deadline, &cancellation());
      if (!ticket.ok()) {
        Close(ToGrpcStatus(ticket.status()));
        return;
      }
      absl::StatusOr<v1::CompleteResponse> result = runner->Run(
          *req, deadline, [this](const v1::CompleteEvent& e) { Push(e); }, &cancellation(),
          arrived);
      Close(ToGrpcStatus(result.status()));
    });
  }

 protected:
  // Output that queues up behind a slow client goes out as one delta per attempt.
  bool Merge(v1::CompleteEvent& queued, const v1::CompleteEvent& next) override {
    if (!queued.has_output() || !next.has_output()) return false;
    v1::OutputDelta& a = *queued.mutable_output();
    const v1::OutputDelta& b = next.output();
    if (a.sub_task_id() != b.sub_task_id() || a.attempt() != b.attempt() ||
        a.answer() != b.answer()) {
      return false;
    }
    a.mutable_text()->append(b.text());
    return true;
  }
};

}  // namespace

OrchestratorService::OrchestratorService(RequestRunner* runner, DeviceRegistry* registry,
                                         const Authenticator* auth, Admission* admission)
    : runner_(runner), registry_(registry), auth_(auth), admission_(admission) {}

ClientGoneWatcher::ClientGoneWatcher(absl::Duration interval)
    : interval_(interval), thread_([this] { Loop(); }) {}

ClientGoneWatcher::~ClientGoneWatcher() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

int ClientGoneWatcher::Add(grpc::ServerContext* context, Cancellation* cancel) {
  absl::MutexLock lock(&mu_);
  const int id = next_id_++;
  watched_.emplace(id, std::make_pair(context, cancel));
  return id;
}

void ClientGoneWatcher::Remove(int id) {
  absl::MutexLock lock(&mu_);  // not while Loop is checking it
  watched_.erase(id);
}

void ClientGoneWatcher::Loop() {
  absl::MutexLock lock(&mu_);
  while (true) {
    mu_.Await(absl::Condition(
        +[](ClientGoneWatcher* w) ABSL_NO_THREAD_SAFETY_ANALYSIS {
          return w->stopping_ || !w->watched_.empty();
        },
        this));
    if (stopping_) return;
    // Returns early only to stop.
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), interval_)) return;
    for (auto& [id, watched] : watched_) {
      if (watched.first->IsCancelled()) watched.second->Cancel();  // idempotent
    }
  }
}

grpc::Status OrchestratorService::Complete(grpc::ServerContext* context,
                                          const v1::CompleteRequest* request,
                                          v1::CompleteResponse* response) {
  const absl::Time arrived = runner_->clock()->Now();
  if (absl::Status role = CheckClientRole(context); !role.ok()) return ToGrpcStatus(role);
  absl::StatusOr<v1::CompleteRequest> req = Authenticated(auth_, Authorization(context), *request);
  if (!req.ok()) return ToGrpcStatus(req.status());
  Cancellation cancel;
  const int watch = watcher_.Add(context, &cancel);
  absl::Cleanup unwatch = [&] { watcher_.Remove(watch); };
  // Gives up waiting a little before the client's deadline, so the client hears why.
  const absl::Time deadline = absl::FromChrono(context->deadline());
  absl::StatusOr<Admission::Ticket> ticket =
      admission_->Acquire(req->client_id(), deadline - absl::Milliseconds(100), &cancel);
  if (!ticket.ok()) return ToGrpcStatus(ticket.status());
  absl::StatusOr<v1::CompleteResponse> result =
      runner_->Run(*req, deadline, nullptr, &cancel, arrived);
  if (result.ok()) *response = *std::move(result);
  return ToGrpcStatus(result.status());
}

grpc::ServerWriteReactor<v1::CompleteEvent>* OrchestratorService::StreamComplete(
    grpc::CallbackServerContext* context, const v1::CompleteRequest* request) {
  return new StreamReactor(context, request, runner_, auth_, admission_, &threads_);
}

grpc::ServerUnaryReactor* OrchestratorService::Explain(grpc::CallbackServerContext* context,
                                                       const v1::CompleteRequest* request,
                                                       v1::CompilationPlan* response) {
  auto* reactor = context->DefaultReactor();
  // Off the reactor thread: authentication reads the ledger.
  threads_.Run([this, reactor, request, response, authorization = Authorization(context),
                role = CheckClientRole(context)] {
    absl::StatusOr<v1::CompleteRequest> req =
        role.ok() ? Authenticated(auth_, authorization, *request)
                  : absl::StatusOr<v1::CompleteRequest>(role);
    absl::StatusOr<v1::CompilationPlan> plan =
        req.ok() ? runner_->Explain(*req) : absl::StatusOr<v1::CompilationPlan>(req.status());
    if (plan.ok()) *response = *std::move(plan);
    reactor->Finish(ToGrpcStatus(plan.status()));
  });
  return reactor;
}

grpc::ServerUnaryReactor* OrchestratorService::ListDevices(grpc::CallbackServerContext* context,
                                                           const v1::ListDevicesRequest* request,
                                                           v1::ListDevicesResponse* response) {
  auto* reactor = context->DefaultReactor();
  // The mesh's devices (addresses, providers, load) are for the mesh's clients: a client's
  // certificate (under mutual TLS) and a key, as for every other call.
  if (absl::Status role = CheckClientRole(context); !role.ok()) {
    reactor->Finish(ToGrpcStatus(role));
    return reactor;
  }
  absl::StatusOr<std::string> client = auth_->ClientFor(Authorization(context));
  if (!client.ok()) {
    reactor->Finish(ToGrpcStatus(client.status()));
    return reactor;
  }
  for (v1::DeviceInfo& d : registry_->Snapshot()) *response->add_devices() = std::move(d);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::Status OrchestratorService::Feedback(grpc::ServerContext* context,
                                          const v1::FeedbackRequest* request,
                                          v1::FeedbackResponse* response) {
  if (absl::Status role = CheckClientRole(context); !role.ok()) return ToGrpcStatus(role);
  absl::StatusOr<std::string> client = auth_->ClientFor(Authorization(context));
  if (!client.ok()) return ToGrpcStatus(client.status());
  absl::StatusOr<v1::FeedbackResponse> result = runner_->Feedback(*client, *request);
  if (result.ok()) *response = *std::move(result);
  return ToGrpcStatus(result.status());
}

grpc::Status OrchestratorService::ListAffinities(grpc::ServerContext* context,
                                                const v1::ListAffinitiesRequest* request,
                                                v1::ListAffinitiesResponse* response) {
  // As ListDevices: for the mesh's clients.
  if (absl::Status role = CheckClientRole(context); !role.ok()) return ToGrpcStatus(role);
  absl::StatusOr<std::string> client = auth_->ClientFor(Authorization(context));
  if (!client.ok()) return ToGrpcStatus(client.status());
  *response = runner_->Affinities();
  return grpc::Status::OK;
}

}  // namespace loom
