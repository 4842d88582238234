#include "worker/worker_service.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "common/cancellation.h"
#include "common/grpc_status.h"
#include "common/join_token.h"
#include "common/queued_write_reactor.h"
#include "common/tls.h"

namespace loom {

// One Infer call: generation runs on the service pool and pushes chunks; the base class
// writes them one at a time (merging text that queues up) and cancels generation when the
// client goes away. When the coordinator does not pass the text on as it comes (batch_ok),
// text that comes in a burst is held and sent together (Send).
class InferReactor : public QueuedWriteReactor<v1::InferChunk> {
 public:
  InferReactor(WorkerService* service, grpc::CallbackServerContext* context,
               const v1::InferRequest* request, InferenceProvider* provider)
      : final_text_ok_(request->final_text_ok()),
        batch_window_(request->batch_ok() ? service->options_.batch_window : absl::ZeroDuration()) {
    GenerateRequest generate;
    generate.request_id = request->request_id();
    generate.messages.assign(request->messages().begin(), request->messages().end());
    generate.max_tokens = request->max_tokens();
    generate.sampling = request->sampling();
    generate.structure = request->structure();
    generate.deadline = absl::FromChrono(context->deadline());
    const std::string model = request->model();
    service->pool_.Schedule([this, service, provider, generate = std::move(generate), model] {
      const absl::Time start = absl::Now();
      last_sent_ = start;
      absl::StatusOr<v1::InferChunk> last = provider->Generate(
          generate, [this](std::string_view text) { return Send(text); }, cancellation());
      if (last.ok()) {
        service->RecordSpeed(last->usage().completion_tokens(),
                             absl::ToDoubleSeconds(absl::Now() - start));
      } else {
        spdlog::info("request {} on {}: {}", generate.request_id, model, last.status().ToString());
        if (last.status().code() == absl::StatusCode::kUnavailable &&
            service->options_.on_upstream_failure) {
          service->options_.on_upstream_failure();
        }
      }
      service->Release();
      // What was held back goes out before the end: with the final chunk when the coordinator
      // reads its text, else (and before an error: the coordinator pays for and continues
      // from the text it has) as a chunk of its own.
      if (!held_.empty() && (!last.ok() || !final_text_ok_)) Flush();
      if (!last.ok()) {
        Close(ToGrpcStatus(last.status()));
        return;
      }
      last->set_text(std::move(held_));
      last->set_final(true);
      CloseWith(*std::move(last), grpc::Status::OK);  // the client may be gone: nothing to tell
    });
  }

 protected:
  // Text generated faster than it can be written goes out as one chunk: the same text in fewer
  // messages, and no change to what the coordinator counts (tokens are counted in the text).
  // When the coordinator reads a final chunk's text, the final chunk folds in too: the answer's
  // end and the status then go out in one message.
  bool Merge(v1::InferChunk& queued, const v1::InferChunk& next) override {
    if (queued.final() || (next.final() && !final_text_ok_)) return false;
    if (next.final()) {
      std::string text = std::move(*queued.mutable_text());
      text.append(next.text());  // the final chunk's own text (held back) comes last
      queued = next;
      queued.set_text(std::move(text));
      return true;
    }
    queued.mutable_text()->append(next.text());
    return true;
  }

 private:
  // The generation's sink (the pool thread). With batch_ok, text that comes within
  // batch_window of the last message sent (or of the start) is held and goes out with the next
  // piece that comes later, or at the end: an answer produced in one burst (a fast model, or a
  // short answer) is one message instead of one per piece, and nothing waits on a timer.
  bool Send(std::string_view text) {
    if (batch_window_ <= absl::ZeroDuration()) {
      v1::InferChunk chunk;
      chunk.set_text(std::string(text));
      return Push(std::move(chunk));
    }
    held_.append(text);
    if (absl::Now() - last_sent_ < batch_window_) return !cancellation().IsCancelled();
    return Flush();
  }

  bool Flush() {
    v1::InferChunk chunk;
    chunk.set_text(std::move(held_));
    held_.clear();
    last_sent_ = absl::Now();
    return Push(std::move(chunk));
  }

  const bool final_text_ok_;
  const absl::Duration batch_window_;  // zero: every piece goes out as it comes
  // The pool thread's alone (the producer's side).
  std::string held_;
  absl::Time last_sent_;
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
    : options_(std::move(options)),
      tokens_per_second_(options_.initial_tokens_per_second),
      pool_(options_.max_concurrency) {
  for (auto& m : models) {
    simulated_ = simulated_ || m.provider->simulated();
    std::string name = m.info.name();
    models_.emplace(std::move(name), std::move(m));
  }
}

WorkerService::~WorkerService() = default;

absl::StatusOr<InferenceProvider*> WorkerService::Admit(grpc::CallbackServerContext* context,
                                                         const std::string& model, bool embedding,
                                                         const char* rpc) {
  if (options_.require_coordinator_peer) {
    std::shared_ptr<const grpc::AuthContext> auth = context->auth_context();
    const PeerIdentity peer = auth ? PeerOf(*auth) : PeerIdentity{};
    if (!peer.verified || peer.role != kRoleCoordinator) {
      spdlog::warn("refused {} from {} ('{}', role '{}'): not a coordinator", rpc, context->peer(),
                   peer.name, peer.role);
      return absl::PermissionDeniedError(
          absl::StrCat("device ", options_.device_id, " serves only its coordinator"));
    }
  }
  if (!options_.join_token.empty()) {
    // Proves to the coordinator that this is the device it meant to dial.
    const auto& md = context->client_metadata();
    auto challenge = md.find(kDialChallengeHeader);
    if (challenge != md.end()) {
      context->AddInitialMetadata(
          kDialProofHeader,
          DialProof(options_.join_token, options_.device_id,
                    absl::string_view(challenge->second.data(), challenge->second.size())));
    }
  }
  auto it = models_.find(model);
  if (it == models_.end()) {
    return absl::NotFoundError(absl::StrCat("device ", options_.device_id,
                                            " does not serve model '", model, "'"));
  }
  const auto& caps = it->second.info.capabilities();
  if ((std::find(caps.begin(), caps.end(), "embeddings") != caps.end()) != embedding) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model '", model, embedding ? "' makes no embeddings" : "' is an embedding model; it does not chat"));
  }
  absl::MutexLock lock(&mu_);
  if (active_ >= options_.max_concurrency) {
    return absl::ResourceExhaustedError(absl::StrCat("device ", options_.device_id,
                                                     " is at its max concurrency (",
                                                     options_.max_concurrency, ")"));
  }
  ++active_;
  return it->second.provider.get();
}

grpc::ServerWriteReactor<v1::InferChunk>* WorkerService::Infer(
    grpc::CallbackServerContext* context, const v1::InferRequest* request) {
  if (request->messages().empty()) {
    return new RejectReactor(
        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "request has no messages"));
  }
  absl::StatusOr<InferenceProvider*> provider = Admit(context, request->model(), false, "Infer");
  if (!provider.ok()) return new RejectReactor(ToGrpcStatus(provider.status()));
  return new InferReactor(this, context, request, *provider);
}

namespace {

// One Embed call: the backend runs on the service pool; the client going away cancels it.
class EmbedReactor : public grpc::ServerUnaryReactor {
 public:
  void OnCancel() override { cancel_.Cancel(); }
  void OnDone() override { delete this; }
  const Cancellation& cancellation() const { return cancel_; }

 private:
  Cancellation cancel_;
};

}  // namespace

grpc::ServerUnaryReactor* WorkerService::Embed(grpc::CallbackServerContext* context,
                                               const v1::EmbedRequest* request,
                                               v1::EmbedResponse* response) {
  auto* reactor = new EmbedReactor();
  if (request->input().empty()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "request has no input"));
    return reactor;
  }
  absl::StatusOr<InferenceProvider*> provider = Admit(context, request->model(), true, "Embed");
  if (!provider.ok()) {
    reactor->Finish(ToGrpcStatus(provider.status()));
    return reactor;
  }
  const absl::Time deadline = absl::FromChrono(context->deadline());
  pool_.Schedule([this, reactor, request, response, provider = *provider, deadline] {
    std::vector<std::string> input(request->input().begin(), request->input().end());
    absl::StatusOr<v1::EmbedResponse> out =
        provider->Embed(input, request->dimensions(), deadline, reactor->cancellation());
    Release();
    if (!out.ok()) {
      spdlog::info("request {} embeddings on {}: {}", request->request_id(), request->model(),
                   out.status().ToString());
      if (out.status().code() == absl::StatusCode::kUnavailable && options_.on_upstream_failure) {
        options_.on_upstream_failure();
      }
      reactor->Finish(ToGrpcStatus(out.status()));
      return;
    }
    *response = *std::move(out);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
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

absl::Status WorkerService::CheckUpstreams(absl::Duration timeout) const {
  for (const auto& [name, m] : models_) {
    absl::Status status = m.provider->CheckUpstream(timeout);
    if (!status.ok()) {
      if (models_.size() == 1) return status;
      return absl::Status(status.code(), absl::StrCat(name, ": ", status.message()));
    }
  }
  return absl::OkStatus();
}

v1::DeviceInfo WorkerService::Info() const {
  v1::DeviceInfo info;
  info.set_device_id(options_.device_id);
  info.set_provider_id(options_.provider_id);
  *info.mutable_load() = Load();
  info.set_simulated(simulated_);
  info.set_state(v1::DEVICE_STATE_HEALTHY);
  absl::MutexLock lock(&mu_);
  for (const auto& [name, m] : models_) {
    v1::ModelInfo* model = info.add_models();
    *model = m.info;
    auto learnt = parameters_b_.find(name);
    if (learnt != parameters_b_.end()) model->set_parameters_b(learnt->second);
  }
  info.set_address(address_);
  return info;
}

void WorkerService::SetParametersB(const std::string& model, double parameters_b) {
  absl::MutexLock lock(&mu_);
  if (models_.count(model)) parameters_b_[model] = parameters_b;
}

}  // namespace loom
