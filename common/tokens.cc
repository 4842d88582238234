#include "common/tokens.h"

namespace loom {
namespace {

constexpr int kMaxWordPiece = 8;

bool IsWordByte(unsigned char c) {
  // Bytes >= 0x80 belong to multi-byte UTF-8 characters: count them as word material so one
  // CJK character is not three tokens.
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         c >= 0x80;
}

bool IsSpace(unsigned char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

}  // namespace

int64_t CountTokens(std::string_view text) {
  int64_t tokens = 0;
  int run = 0;
  for (unsigned char c : text) {
    if (IsWordByte(c)) {
      if (run == 0) ++tokens;
      if (++run == kMaxWordPiece) run = 0;
    } else {
      run = 0;
      if (!IsSpace(c)) ++tokens;
    }
  }
  return tokens;
}

}  // namespace loom
