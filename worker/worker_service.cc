#include "worker/worker_service.h"

#include <chrono>
#include <deque>
#include <utility>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "common/cancellation.h"
#include "common/grpc_status.h"

namespace loom {

// One Infer call. Generation runs on the service pool and pushes chunks here; the reactor
// writes them one at a time. The object is deleted when both gRPC (OnDone) and the generator
// are finished with it.
class InferReactor : public grpc::ServerWriteReactor<v1::InferChunk> {
 public:
  InferReactor(WorkerService* service, grpc::CallbackServerContext* context,
               const v1::InferRequest* request, InferenceProvider* provider)
      : service_(service) {
    GenerateRequest generate;
    generate.request_id = request->request_id();
    generate.messages.assign(request->messages().begin(), request->messages().end());
    generate.max_tokens = request->max_tokens();
    generate.deadline = absl::FromChrono(context->deadline());
    const std::string model = request->model();
    service_->pool_.Schedule([this, provider, generate = std::move(generate), model] {
      const absl::Time start = absl::Now();
      absl::StatusOr<v1::Usage> usage = provider->Generate(
          generate, [this](std::string_view text) { return Push(text); }, cancel_);
      if (usage.ok()) {
        double seconds = absl::ToDoubleSeconds(absl::Now() - start);
        service_->RecordSpeed(usage->completion_tokens(), seconds);
      } else {
        spdlog::info("request {} on {}: {}", generate.request_id, model, usage.status().ToString());
      }
      service_->Release();
      Complete(std::move(usage));
    });
  }

  void OnWriteDone(bool ok) override {
    const v1::InferChunk* next = nullptr;
    grpc::Status finish;
    bool do_finish = false;
    {
      absl::MutexLock lock(&mu_);
      pending_.pop_front();
      if (!ok) {
        // The client is gone: stop generating; nothing more can be written.
        broken_ = true;
        pending_.clear();
      }
      if (!pending_.empty()) {
        next = &pending_.front();
      } else {
        writing_ = false;
        do_finish = MaybeFinishLocked(&finish);
      }
    }
    if (!ok) cancel_.Cancel();
    if (next) StartWrite(next);
    if (do_finish) Finish(finish);
  }

  void OnCancel() override { cancel_.Cancel(); }

  void OnDone() override { Unref(); }

 private:
  bool Push(std::string_view text) {
    const v1::InferChunk* to_write = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (broken_) return false;
      v1::InferChunk& chunk = pending_.emplace_back();
      chunk.set_text(std::string(text));
      if (!writing_) {
        writing_ = true;
        to_write = &chunk;
      }
    }
    if (to_write) StartWrite(to_write);
    return true;
  }

  void Complete(absl::StatusOr<v1::Usage> usage) {
    const v1::InferChunk* to_write = nullptr;
    grpc::Status finish;
    bool do_finish = false;
    {
      absl::MutexLock lock(&mu_);
      generator_done_ = true;
      if (usage.ok() && !broken_) {
        v1::InferChunk& last = pending_.emplace_back();
        last.set_final(true);
        *last.mutable_usage() = *usage;
        if (!writing_) {
          writing_ = true;
          to_write = &last;
        }
      } else {
        status_ = usage.ok() ? grpc::Status(grpc::StatusCode::CANCELLED, "client went away")
                             : ToGrpcStatus(usage.status());
        if (!writing_) do_finish = MaybeFinishLocked(&finish);
      }
    }
    if (to_write) StartWrite(to_write);
    if (do_finish) Finish(finish);
    Unref();
  }

  // Finishes once the generator is done and every chunk is written.
  bool MaybeFinishLocked(grpc::Status* status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!generator_done_ || finished_ || !pending_.empty()) return false;
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

  WorkerService* const service_;
  Cancellation cancel_;

  absl::Mutex mu_;
  std::deque<v1::InferChunk> pending_ ABSL_GUARDED_BY(mu_);  // front is being written
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  bool generator_done_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  int refs_ ABSL_GUARDED_BY(mu_) = 2;  // gRPC (OnDone) and the generator (Complete)
};

namespace {

// A reactor that fails at once, for calls refused before any work.
class RejectReactor : public grpc::ServerWriteReactor<v1::InferChunk> {
 public:
  explicit RejectReactor(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

WorkerService::WorkerService(WorkerServiceOptions options, std::vector<ServedModel> models)
    : options_(std::move(options)), pool_(options_.max_concurrency) {
  for (auto& m : models) {
    simulated_ = simulated_ || m.provider->simulated();
    std::string name = m.info.name();
    models_.emplace(std::move(name), std::move(m));
  }
}

WorkerService::~WorkerService() = default;

grpc::ServerWriteReactor<v1::InferChunk>* WorkerService::Infer(
    grpc::CallbackServerContext* context, const v1::InferRequest* request) {
  auto it = models_.find(request->model());
  if (it == models_.end()) {
    return new RejectReactor(grpc::Status(
        grpc::StatusCode::NOT_FOUND,
        absl::StrCat("device ", options_.device_id, " does not serve model '", request->model(),
                     "'")));
  }
  if (request->messages().empty()) {
    return new RejectReactor(
        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "request has no messages"));
  }
  {
    absl::MutexLock lock(&mu_);
    if (active_ >= options_.max_concurrency) {
      return new RejectReactor(grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrCat("device ", options_.device_id, " is at its max concurrency (",
                       options_.max_concurrency, ")")));
    }
    ++active_;
  }
  return new InferReactor(this, context, request, it->second.provider.get());
}

void WorkerService::Release() {
  absl::MutexLock lock(&mu_);
  --active_;
}

void WorkerService::RecordSpeed(int64_t tokens, double seconds) {
  if (tokens <= 0 || seconds <= 0) return;
  absl::MutexLock lock(&mu_);
  double speed = tokens / seconds;
  // Exponential moving average: recent requests matter most.
  tokens_per_second_ = tokens_per_second_ == 0 ? speed : 0.8 * tokens_per_second_ + 0.2 * speed;
}

grpc::ServerUnaryReactor* WorkerService::Describe(grpc::CallbackServerContext* context,
                                                  const v1::DescribeRequest* request,
                                                  v1::DescribeResponse* response) {
  *response->mutable_device() = Info();
  auto* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

void WorkerService::set_address(const std::string& address) {
  absl::MutexLock lock(&mu_);
  address_ = address;
}

v1::DeviceLoad WorkerService::Load() const {
  absl::MutexLock lock(&mu_);
  v1::DeviceLoad load;
  load.set_active(active_);
  load.set_queued(0);
  load.set_max_concurrency(options_.max_concurrency);
  load.set_tokens_per_second(tokens_per_second_);
  return load;
}

v1::DeviceInfo WorkerService::Info() const {
  v1::DeviceInfo info;
  info.set_device_id(options_.device_id);
  info.set_provider_id(options_.provider_id);
  for (const auto& [name, m] : models_) *info.add_models() = m.info;
  *info.mutable_load() = Load();
  info.set_simulated(simulated_);
  info.set_state(v1::DEVICE_STATE_HEALTHY);
  absl::MutexLock lock(&mu_);
  info.set_address(address_);
  return info;
}

}  // namespace loom
