#include "coordinator/orchestrator_service.h"

#include <memory>

#include "common/cancellation.h"
#include "common/grpc_status.h"
#include "common/queued_write_reactor.h"

namespace loom {
namespace {

// Complete: the request runs on the pool; OnCancel cancels it.
class CompleteReactor : public grpc::ServerUnaryReactor {
 public:
  CompleteReactor(grpc::CallbackServerContext* context, const v1::CompleteRequest* request,
                  v1::CompleteResponse* response, RequestRunner* runner, ThreadPool* pool) {
    const absl::Time deadline = absl::FromChrono(context->deadline());
    pool->Schedule([this, request, response, runner, deadline] {
      absl::StatusOr<v1::CompleteResponse> result =
          runner->Run(*request, deadline, nullptr, &cancel_);
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
                RequestRunner* runner, ThreadPool* pool) {
    const absl::Time deadline = absl::FromChrono(context->deadline());
    pool->Schedule([this, request, runner, deadline] {
      absl::StatusOr<v1::CompleteResponse> result = runner->Run(
          *request, deadline, [this](const v1::CompleteEvent& e) { Push(e); }, &cancellation());
      Close(ToGrpcStatus(result.status()));
    });
  }
};

}  // namespace

OrchestratorService::OrchestratorService(RequestRunner* runner, DeviceRegistry* registry,
                                         int threads)
    : runner_(runner), registry_(registry), pool_(threads) {}

grpc::ServerUnaryReactor* OrchestratorService::Complete(grpc::CallbackServerContext* context,
                                                        const v1::CompleteRequest* request,
                                                        v1::CompleteResponse* response) {
  return new CompleteReactor(context, request, response, runner_, &pool_);
}

grpc::ServerWriteReactor<v1::CompleteEvent>* OrchestratorService::StreamComplete(
    grpc::CallbackServerContext* context, const v1::CompleteRequest* request) {
  return new StreamReactor(context, request, runner_, &pool_);
}

grpc::ServerUnaryReactor* OrchestratorService::Explain(grpc::CallbackServerContext* context,
                                                       const v1::CompleteRequest* request,
                                                       v1::CompilationPlan* response) {
  auto* reactor = context->DefaultReactor();
  absl::StatusOr<v1::CompilationPlan> plan = runner_->Explain(*request);
  if (plan.ok()) *response = *std::move(plan);
  reactor->Finish(ToGrpcStatus(plan.status()));
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
