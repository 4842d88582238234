#include "coordinator/orchestrator_service.h"

#include <memory>

#include "common/cancellation.h"
#include "common/grpc_status.h"
#include "common/queued_write_reactor.h"

namespace loom {
namespace {

std::string Authorization(grpc::CallbackServerContext* context) {
  const auto& md = context->client_metadata();
  auto it = md.find("authorization");
  return it == md.end() ? std::string() : std::string(it->second.data(), it->second.size());
}

// The request as the runner sees it: charged to the authenticated client.
absl::StatusOr<v1::CompleteRequest> Authenticated(const Authenticator* auth,
                                                  const std::string& authorization,
                                                  const v1::CompleteRequest& request) {
  absl::StatusOr<std::string> client = auth->ClientFor(authorization);
  if (!client.ok()) return client.status();
  v1::CompleteRequest copy = request;
  copy.set_client_id(*client);
  return copy;
}

// Complete: authentication and the request run on the pool; OnCancel cancels it.
class CompleteReactor : public grpc::ServerUnaryReactor {
 public:
  CompleteReactor(grpc::CallbackServerContext* context, const v1::CompleteRequest* request,
                  v1::CompleteResponse* response, RequestRunner* runner, const Authenticator* auth,
                  ThreadPool* pool) {
    const absl::Time deadline = absl::FromChrono(context->deadline());
    const absl::Time arrived = runner->clock()->Now();
    pool->Schedule([this, request, response, runner, auth, deadline, arrived,
                    authorization = Authorization(context)] {
      absl::StatusOr<v1::CompleteRequest> req = Authenticated(auth, authorization, *request);
      absl::StatusOr<v1::CompleteResponse> result =
          req.ok() ? runner->Run(*req, deadline, nullptr, &cancel_, arrived)
                   : absl::StatusOr<v1::CompleteResponse>(req.status());
      if (result.ok()) *response = *std::move(result);
      Finish(ToGrpcStatus(result.status()));
    });
  }
  void OnCancel() override { cancel_.Cancel(); }
  void OnDone() override { delete this; }

 private:
  Cancellation cancel_;
};

// StreamComplete: the runner's events are queued and written one at a time.
class StreamReactor : public QueuedWriteReactor<v1::CompleteEvent> {
 public:
  StreamReactor(grpc::CallbackServerContext* context, const v1::CompleteRequest* request,
                RequestRunner* runner, const Authenticator* auth, ThreadPool* pool) {
    const absl::Time deadline = absl::FromChrono(context->deadline());
    const absl::Time arrived = runner->clock()->Now();
    pool->Schedule([this, request, runner, auth, deadline, arrived,
                    authorization = Authorization(context)] {
      absl::StatusOr<v1::CompleteRequest> req = Authenticated(auth, authorization, *request);
      if (!req.ok()) {
        Close(ToGrpcStatus(req.status()));
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
                                         const Authenticator* auth, int threads)
    : runner_(runner), registry_(registry), auth_(auth), pool_(threads) {}

grpc::ServerUnaryReactor* OrchestratorService::Complete(grpc::CallbackServerContext* context,
                                                        const v1::CompleteRequest* request,
                                                        v1::CompleteResponse* response) {
  return new CompleteReactor(context, request, response, runner_, auth_, &pool_);
}

grpc::ServerWriteReactor<v1::CompleteEvent>* OrchestratorService::StreamComplete(
    grpc::CallbackServerContext* context, const v1::CompleteRequest* request) {
  return new StreamReactor(context, request, runner_, auth_, &pool_);
}

grpc::ServerUnaryReactor* OrchestratorService::Explain(grpc::CallbackServerContext* context,
                                                       const v1::CompleteRequest* request,
                                                       v1::CompilationPlan* response) {
  auto* reactor = context->DefaultReactor();
  // Off the reactor thread: authentication reads the ledger.
  pool_.Schedule([this, reactor, request, response, authorization = Authorization(context)] {
    absl::StatusOr<v1::CompleteRequest> req = Authenticated(auth_, authorization, *request);
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
  for (v1::DeviceInfo& d : registry_->Snapshot()) *response->add_devices() = std::move(d);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace loom
