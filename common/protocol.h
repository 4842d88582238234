// File: common/protocol.h
// The wire protocol version (proto/loom/v1). A coordinator refuses workers of another major
// version; minor versions only add fields.
#ifndef LOOM_COMMON_PROTOCOL_H_
#define LOOM_COMMON_PROTOCOL_H_

namespace loom {

inline constexpr unsigned kProtocolMajor = 1;
inline constexpr unsigned kProtocolMinor = 1;  // 1.1: InferRequest.final_text_ok, batch_ok

}  // namespace loom

#endif  // LOOM_COMMON_PROTOCOL_H_
