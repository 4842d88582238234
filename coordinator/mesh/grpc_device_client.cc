#include "coordinator/mesh/grpc_device_client.h"

#include <map>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/join_token.h"
#include <spdlog/spdlog.h>

namespace loom {

std::shared_ptr<v1::Worker::Stub> GrpcDeviceClient::StubFor(const std::string& address,
                                                           const std::string& device_id) {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  CachedStub& cached = stubs_[tls_ ? absl::StrCat(address, "|", device_id) : address];
  cached.last_used = now;
  if (cached.stub) return cached.stub;
  grpc::ChannelArguments args;
  if (tls_) args.SetSslTargetNameOverride(device_id);
  cached.stub = v1::Worker::NewStub(grpc::CreateCustomChannel(address, credentials_, args));
  std::shared_ptr<v1::Worker::Stub> stub = cached.stub;
  // A new device: drop channels to devices not used for a while, at most once per idle period,
  // so the sweep costs O(1) amortized per call.
  if (now - last_sweep_ >= idle_timeout_) {
    last_sweep_ = now;
    std::erase_if(stubs_, [&](const auto& entry) {
      return now - entry.second.last_used > idle_timeout_;
    });
  }
  return stub;
}

namespace {

// One call's context: its deadline, the cancellation wired to it for as long as the call
// lives, and in join-token mode a fresh challenge the worker must answer.
struct CallContext {
  CallContext(absl::Time deadline, Cancellation* cancel, bool challenged) : cancel(cancel) {
    context.set_deadline(absl::ToChronoTime(deadline));
    if (cancel) cancel_id = cancel->OnCancel([this] { context.TryCancel(); });
    if (challenged) {
      challenge = NewDialChallenge();
      context.AddMetadata(kDialChallengeHeader, challenge);
    }
  }
  ~CallContext() {
    if (cancel && cancel_id >= 0) cancel->RemoveCallback(cancel_id);
  }
  grpc::ClientContext context;
  Cancellation* const cancel;
  int cancel_id = -1;
  std::string challenge;  // empty: none asked
};

absl::Status NotProvenError(const std::string& address, const std::string& device_id) {
  return absl::UnavailableError(absl::StrCat(
      "the worker at ", address, " could not prove it is device ", device_id,
      " (join-token challenge failed); its output is not used"));
}

}  // namespace

bool GrpcDeviceClient::Proven(const grpc::ClientContext& context, const std::string& challenge,
                              const std::string& address, const std::string& device_id,
                              const std::string& provider_id) const {
  const auto& md = context.GetServerInitialMetadata();
  auto proof = md.find(kDialProofHeader);
  const bool proven =
      proof != md.end() &&
      DialProofMatches(IssueJoinToken(join_secret_, device_id, provider_id), device_id, challenge,
                       absl::string_view(proof->second.data(), proof->second.size()));
  if (!proven) {
    spdlog::error("the worker at {} could not prove it is device {}: its address may be "
                  "borrowed; not used",
                  address, device_id);
  }
  return proven;
}

absl::StatusOr<v1::EmbedResponse> GrpcDeviceClient::Embed(const EmbedCall& call,
                                                          Cancellation* cancel) {
  CallContext call_context(call.deadline, cancel, !join_secret_.empty());
  grpc::ClientContext& context = call_context.context;
  const std::string& challenge = call_context.challenge;
  v1::EmbedResponse response;
  absl::Status status = FromGrpcStatus(
      StubFor(call.address, call.device_id)->Embed(&context, call.request, &response));
  if (!status.ok()) return status;
  if (!challenge.empty() &&
      !Proven(context, challenge, call.address, call.device_id, call.provider_id)) {
    return NotProvenError(call.address, call.device_id);
  }
  return response;
}

size_t GrpcDeviceClient::CachedChannels() const {
  absl::MutexLock lock(&mu_);
  return stubs_.size();
}

absl::StatusOr<v1::InferChunk> GrpcDeviceClient::Infer(const DeviceCall& call, const ChunkSink& sink,
                                                  Cancellation* cancel) {
  CallContext call_context(call.deadline, cancel, !join_secret_.empty());
  grpc::ClientContext& context = call_context.context;
  const std::string& challenge = call_context.challenge;
  const std::shared_ptr<v1::Worker::Stub> stub = StubFor(call.address, call.device_id);
  std::unique_ptr<grpc::ClientReader<v1::InferChunk>> reader = stub->Infer(&context, call.request);
  v1::InferChunk chunk;
  v1::InferChunk last;
  bool final_seen = false;
  bool proven = challenge.empty();
  while (reader->Read(&chunk)) {
    if (!proven) {
      // The worker's initial metadata has arrived with its first message.
      proven = Proven(context, challenge, call.address, call.device_id, call.provider_id);
      if (!proven) {
        context.TryCancel();
        (void)reader->Finish();
        return NotProvenError(call.address, call.device_id);
      }
    }
    if (!chunk.text().empty()) sink(chunk.text());  // a final chunk's too (final_text_ok)
    if (chunk.final()) {
      last = std::move(chunk);
      last.clear_text();
      final_seen = true;
    }
  }
  absl::Status status = FromGrpcStatus(reader->Finish());
  if (!status.ok()) return status;
  if (!final_seen) {
    return absl::UnavailableError(absl::StrCat("worker at ", call.address,
                                               " ended the stream without a final chunk"));
  }
  return last;
}

}  // namespace loom
