#include "coordinator/grpc_device_client.h"

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"

namespace loom {

v1::Worker::Stub* GrpcDeviceClient::StubFor(const DeviceCall& call) {
  absl::MutexLock lock(&mu_);
  auto& stub = stubs_[tls_ ? absl::StrCat(call.address, "|", call.device_id) : call.address];
  if (!stub) {
    grpc::ChannelArguments args;
    if (tls_) args.SetSslTargetNameOverride(call.device_id);
    stub = v1::Worker::NewStub(grpc::CreateCustomChannel(call.address, credentials_, args));
  }
  return stub.get();
}

absl::StatusOr<v1::Usage> GrpcDeviceClient::Infer(const DeviceCall& call, const ChunkSink& sink,
                                                  Cancellation* cancel) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(call.deadline));
  const int cancel_id = cancel ? cancel->OnCancel([&context] { context.TryCancel(); }) : -1;
  std::unique_ptr<grpc::ClientReader<v1::InferChunk>> reader =
      StubFor(call)->Infer(&context, call.request);
  v1::InferChunk chunk;
  v1::Usage usage;
  bool final_seen = false;
  while (reader->Read(&chunk)) {
    if (chunk.final()) {
      usage = chunk.usage();
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
  return usage;
}

}  // namespace loom
