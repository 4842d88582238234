// File: coordinator/mesh/grpc_device_client.h
// DeviceClient over gRPC: one channel per worker (address, device id), kept for reuse while the
// worker is being used. Devices come and go, so a channel idle for longer than `idle_timeout` is
// dropped the next time a new one is made; the cache stays the size of the devices in use.
// With TLS, each channel checks that the worker's certificate names the device the registry
// holds at that address (the device id as the expected server name), and presents the
// coordinator's own certificate. Thread-safe.
#ifndef LOOM_COORDINATOR_MESH_GRPC_DEVICE_CLIENT_H_
#define LOOM_COORDINATOR_MESH_GRPC_DEVICE_CLIENT_H_

#include <map>
#include <memory>
#include <string>

#include <grpcpp/security/credentials.h>

#include "common/tls.h"
#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "coordinator/mesh/device_client.h"
#include "loom/v1/worker.grpc.pb.h"

namespace loom {

class GrpcDeviceClient : public DeviceClient {
 public:
  // `credentials`: ChannelCredentialsFor (common/tls.h). `tls`: whether they are TLS ones, so
  // the device id is checked against the worker's certificate.
  // `join_secret`: in join-token mode, the secret tokens are issued under; every call then
  // challenges the worker to prove it holds the token of the device it was dialled as
  // (join_token.h), and a worker that cannot is not used (UNAVAILABLE: retried elsewhere).
  GrpcDeviceClient(std::shared_ptr<grpc::ChannelCredentials> credentials, bool tls,
                   absl::Duration idle_timeout = absl::Minutes(10), Clock* clock = Clock::Real(),
                   std::string join_secret = "")
      : credentials_(std::move(credentials)), tls_(tls), idle_timeout_(idle_timeout),
        clock_(clock), join_secret_(std::move(join_secret)), last_sweep_(clock->Now()) {}

  absl::StatusOr<v1::InferChunk> Infer(const DeviceCall& call, const ChunkSink& sink,
                                  Cancellation* cancel) override;
  absl::StatusOr<v1::EmbedResponse> Embed(const EmbedCall& call, Cancellation* cancel) override;

  // Channels currently cached.
  size_t CachedChannels() const;

 private:
  struct CachedStub {
    std::shared_ptr<v1::Worker::Stub> stub;  // shared: a call may outlive its eviction
    absl::Time last_used;
  };

  std::shared_ptr<v1::Worker::Stub> StubFor(const std::string& address, const std::string& device_id);
  // In join-token mode, whether the worker's initial metadata answers `challenge` as the
  // device (device_id, provider_id) would (logged when not).
  bool Proven(const grpc::ClientContext& context, const std::string& challenge,
              const std::string& address, const std::string& device_id,
              const std::string& provider_id) const;

  const std::shared_ptr<grpc::ChannelCredentials> credentials_;
  const bool tls_;
  const absl::Duration idle_timeout_;
  Clock* const clock_;
  const std::string join_secret_;

  mutable absl::Mutex mu_;
  std::map<std::string, CachedStub> stubs_ ABSL_GUARDED_BY(mu_);
  absl::Time last_sweep_ ABSL_GUARDED_BY(mu_);
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_MESH_GRPC_DEVICE_CLIENT_H_
