#include "common/ids.h"

#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace loom {
namespace {

TEST(IdsTest, UuidsAreVersion4AndDistinct) {
  const std::regex v4("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string id = NewUuid();
    EXPECT_TRUE(std::regex_match(id, v4)) << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(IdsTest, ThreadsDrawDistinctUuids) {
  // Ids drawn on several threads at once (one shared generator) never repeat.
  std::vector<std::vector<std::string>> drawn(4);
  std::vector<std::thread> threads;
  for (auto& ids : drawn) {
    threads.emplace_back([&ids] {
      for (int i = 0; i < 500; ++i) ids.push_back(NewUuid());
    });
  }
  for (auto& t : threads) t.join();
  std::set<std::string> seen;
  for (const auto& ids : drawn) seen.insert(ids.begin(), ids.end());
  EXPECT_EQ(seen.size(), 2000u);
}

TEST(IdsTest, RequestIdsArePrintableAndBounded) {
  EXPECT_TRUE(ValidRequestId("").ok());
  EXPECT_TRUE(ValidRequestId("req_0123-abc:XYZ.9").ok());
  EXPECT_TRUE(ValidRequestId(std::string(kMaxRequestIdBytes, 'a')).ok());
  EXPECT_FALSE(ValidRequestId(std::string(kMaxRequestIdBytes + 1, 'a')).ok());
  EXPECT_FALSE(ValidRequestId(std::string("a\0b", 3)).ok());  // NUL broke the hash chain
  EXPECT_FALSE(ValidRequestId("two words").ok());
  EXPECT_FALSE(ValidRequestId("tab\there").ok());
  EXPECT_FALSE(ValidRequestId("caf\xC3\xA9").ok());
}

TEST(IdsTest, ClientNamesCannotMakeTwoScopedIdsAlike) {
  EXPECT_TRUE(ValidClientName("alice").ok());
  EXPECT_TRUE(ValidClientName("team-7.ops+ci@example").ok());
  EXPECT_FALSE(ValidClientName("").ok());
  EXPECT_FALSE(ValidClientName(std::string(65, 'a')).ok());
  // "a/b" + "/c" would be the scoped id of client "a" with id "b/c".
  EXPECT_FALSE(ValidClientName("a/b").ok());
  EXPECT_FALSE(ValidClientName("two words").ok());
  EXPECT_EQ(ScopedRequestId("client:a", "b/c"), "client:a/b/c");
  EXPECT_NE(ScopedRequestId("client:a", "x"), ScopedRequestId("client:b", "x"));
}

}  // namespace
}  // namespace loom
