#include "coordinator/grpc_device_client.h"

#include <map>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/join_token.h"
#include <spdlog/spdlog.h>

namespace loom {

std::shared_ptr<v1::Worker::Stub> GrpcDeviceClient::StubFor(const DeviceCall& call) {
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  CachedStub& cached =
      stubs_[tls_ ? absl::StrCat(call.address, "|", call.device_id) : call.address];
  cached.last_used = now;
  if (cached.stub) return cached.stub;
  grpc::ChannelArguments args;
  if (tls_) args.SetSslTargetNameOverride(call.device_id);
  cached.stub = v1::Worker::NewStub(grpc::CreateCustomChannel(call.address, credentials_, args));
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

size_t GrpcDeviceClient::CachedChannels() const {
  absl::MutexLock lock(&mu_);
  return stubs_.size();
}

absl::StatusOr<v1::InferChunk> GrpcDeviceClient::Infer(const DeviceCall& call, const ChunkSink& sink,
                                                  Cancellation* cancel) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(call.deadline));
  const int cancel_id = cancel ? cancel->OnCancel([&context] { context.TryCancel(); }) : -1;
  const std::string challenge = join_secret_.empty() ? "" : NewDialChallenge();
  if (!challenge.empty()) context.AddMetadata(kDialChallengeHeader, challenge);
  const std::shared_ptr<v1::Worker::Stub> stub = StubFor(call);
  std::unique_ptr<grpc::ClientReader<v1::InferChunk>> reader = stub->Infer(&context, call.request);
  v1::InferChunk chunk;
  v1::InferChunk last;
  bool final_seen = false;
  bool proven = challenge.empty();
  while (reader->Read(&chunk)) {
    if (!proven) {
      // The worker's initial metadata has arrived with its first message.
      const auto& md = context.GetServerInitialMetadata();
      auto proof = md.find(kDialProofHeader);
      proven = proof != md.end() &&
               DialProofMatches(IssueJoinToken(join_secret_, call.device_id, call.provider_id),
                                call.device_id, challenge,
                                absl::string_view(proof->second.data(), proof->second.size()));
      if (!proven) {
        context.TryCancel();
        (void)reader->Finish();
        if (cancel && cancel_id >= 0) cancel->RemoveCallback(cancel_id);
        spdlog::error("the worker at {} could not prove it is device {}: its address may be "
                      "borrowed; not used",
                      call.address, call.device_id);
        return absl::UnavailableError(absl::StrCat(
            "the worker at ", call.address, " could not prove it is device ", call.device_id,
            " (join-token challenge failed); its output is not used"));
      }
    }
    if (chunk.final()) {
      last = chunk;
      final_seen = true;
    } else if (!chunk.text().empty()) {
      sink(chunk.text());
    }
  }
  absl::Status status = FromGrpcStatus(reader->Finish());
  if (cancel && cancel_id >= 0) cancel->RemoveCallback(cancel_id);
  if (!status.ok()) return status;
  if (!final_seen) {
    return absl::UnavailableError(absl::StrCat("worker at ", call.address,
                                               " ended the stream without a final chunk"));
  }
  return last;
}

}  // namespace loom
