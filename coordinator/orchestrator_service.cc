#include "coordinator/orchestrator_service.h"

#include <deque>
#include <memory>

#include "common/cancellation.h"
#include "common/grpc_status.h"

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
class StreamReactor : public grpc::ServerWriteReactor<v1::CompleteEvent> {
 public:
  StreamReactor(grpc::CallbackServerContext* context, const v1::CompleteRequest* request,
                RequestRunner* runner, ThreadPool* pool) {
    const absl::Time deadline = absl::FromChrono(context->deadline());
    pool->Schedule([this, request, runner, deadline] {
      absl::StatusOr<v1::CompleteResponse> result = runner->Run(
          *request, deadline, [this](const v1::CompleteEvent& e) { Push(e); }, &cancel_);
      Done(ToGrpcStatus(result.status()));
    });
  }

  void OnWriteDone(bool ok) override {
    const v1::CompleteEvent* next = nullptr;
    bool finish = false;
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      pending_.pop_front();
      if (!ok) {
        broken_ = true;
        pending_.clear();
      }
      if (!pending_.empty()) {
        next = &pending_.front();
      } else {
        writing_ = false;
        finish = MaybeFinishLocked(&status);
      }
    }
    if (!ok) cancel_.Cancel();
    if (next) StartWrite(next);
    if (finish) Finish(status);
  }
  void OnCancel() override { cancel_.Cancel(); }
  void OnDone() override { Unref(); }

 private:
  void Push(const v1::CompleteEvent& event) {
    const v1::CompleteEvent* to_write = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (broken_) return;
      pending_.push_back(event);
      if (!writing_) {
        writing_ = true;
        to_write = &pending_.back();
      }
    }
    if (to_write) StartWrite(to_write);
  }

  void Done(grpc::Status status) {
    bool finish = false;
    grpc::Status to_send;
    {
      absl::MutexLock lock(&mu_);
      status_ = std::move(status);
      runner_done_ = true;
      if (!writing_) finish = MaybeFinishLocked(&to_send);
    }
    if (finish) Finish(to_send);
    Unref();
  }

  bool MaybeFinishLocked(grpc::Status* status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!runner_done_ || finished_ || !pending_.empty()) return false;
    finished_ = true;
    *status = status_;
    return true;
  }

  void Unref() {
    bool last;
    {
      absl::MutexLock lock(&mu_);
      last = --refs_ == 0;
    }
    if (last) delete this;
  }

  Cancellation cancel_;
  absl::Mutex mu_;
  std::deque<v1::CompleteEvent> pending_ ABSL_GUARDED_BY(mu_);  // front is being written
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool runner_done_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  int refs_ ABSL_GUARDED_BY(mu_) = 2;  // gRPC (OnDone) and the runner (Done)
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
