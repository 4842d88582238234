#include "common/sse_parser.h"

#include <vector>

#include "gtest/gtest.h"

namespace loom {
namespace {

std::vector<std::string> Parse(SseParser& parser, const std::vector<std::string>& pieces,
                               absl::Status* status = nullptr) {
  std::vector<std::string> events;
  for (const auto& p : pieces) {
    absl::Status s = parser.Feed(p, [&](absl::string_view data) {
      events.emplace_back(data);
      return true;
    });
    if (status) *status = s;
    if (!s.ok()) break;
  }
  return events;
}

TEST(SseParserTest, EventsSplitAcrossArbitraryPieces) {
  SseParser parser;
  auto events = Parse(parser, {"da", "ta: {\"a\":1}\n", "\ndata: [DO", "NE]\n\n"});
  EXPECT_EQ(events, (std::vector<std::string>{"{\"a\":1}", "[DONE]"}));
}

TEST(SseParserTest, CrLfCommentsOtherFieldsAndMultiLineData) {
  SseParser parser;
  auto events = Parse(parser, {": keep-alive\r\n\r\nevent: x\r\nid: 7\r\ndata: a\r\ndata:b\r\n\r\n",
                               "data: c\r\rdata: d\n\n"});
  EXPECT_EQ(events, (std::vector<std::string>{"a\nb", "c", "d"}));
}

TEST(SseParserTest, IncompleteEventIsNotDispatched) {
  SseParser parser;
  EXPECT_TRUE(Parse(parser, {"data: half"}).empty());
}

TEST(SseParserTest, OversizedEventsAreRefused) {
  SseParser parser(16);
  absl::Status status;
  Parse(parser, {"data: 0123456789abcdefghij\n\n"}, &status);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  SseParser lines(16);
  Parse(lines, {std::string(100, 'x')}, &status);
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
}

TEST(SseParserTest, HandlerCanStopTheStream) {
  SseParser parser;
  int seen = 0;
  absl::Status s = parser.Feed("data: 1\n\ndata: 2\n\n", [&](absl::string_view) { return ++seen < 1; });
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(seen, 1);
}

}  // namespace
}  // namespace loom
