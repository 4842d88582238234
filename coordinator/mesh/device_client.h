// File: coordinator/mesh/device_client.h
// The coordinator's seam to workers: run one inference attempt on one device.
//
// Ownership: the coordinator owns one DeviceClient; it may cache connections per address.
// Thread safety: Infer may be called from many threads at once.
// Failure: the worker's status as absl::Status (UNAVAILABLE when the device is unreachable or
// the stream broke, DEADLINE_EXCEEDED past `deadline`, CANCELLED when `cancel` fired, or
// whatever the worker answered). Text already passed to the sink belongs to a failed attempt
// then and must be discarded by the caller.
#ifndef LOOM_COORDINATOR_MESH_DEVICE_CLIENT_H_
#define LOOM_COORDINATOR_MESH_DEVICE_CLIENT_H_

#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/cancellation.h"
#include "loom/v1/worker.pb.h"

namespace loom {

struct DeviceCall {
  std::string device_id;  // with TLS, the worker's certificate must name this device
  std::string provider_id;  // in join-token mode, the worker must prove (device, provider)
  std::string address;
  v1::InferRequest request;
  absl::Time deadline = absl::InfiniteFuture();
};

using ChunkSink = std::function<void(std::string_view text)>;

// One embeddings call on one device.
struct EmbedCall {
  std::string device_id;
  std::string provider_id;
  std::string address;
  v1::EmbedRequest request;
  absl::Time deadline = absl::InfiniteFuture();
};

class DeviceClient {
 public:
  virtual ~DeviceClient() = default;
  // Streams the attempt's text to `sink` and returns the worker's final chunk (usage and
  // finish_reason).
  virtual absl::StatusOr<v1::InferChunk> Infer(const DeviceCall& call, const ChunkSink& sink,
                                          Cancellation* cancel) = 0;
  // The worker's embeddings of the call's input. UNIMPLEMENTED where none can be made.
  virtual absl::StatusOr<v1::EmbedResponse> Embed(const EmbedCall& call, Cancellation* cancel) {
    return absl::UnimplementedError("this device client makes no embeddings calls");
  }
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_MESH_DEVICE_CLIENT_H_
