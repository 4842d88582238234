#include "coordinator/analyzer/lexicon.h"

#include "gtest/gtest.h"

namespace loom::lexicon {
namespace {

TEST(LexiconTest, CodeSyntaxCountsDistinctMarkersUpToThree) {
  EXPECT_EQ(CodeSyntax("no code here, just prose."), 0);
  EXPECT_EQ(CodeSyntax("call f() and f() again"), 1) << "a marker counts once";
  EXPECT_EQ(CodeSyntax("x != y"), 1);
  EXPECT_EQ(CodeSyntax("ends with a marker: a::"), 1) << "at the very end";
  EXPECT_EQ(CodeSyntax("a:"), 0) << "half a marker at the end";
  EXPECT_EQ(CodeSyntax("#include <x>\nint main() { return 0; }"), 3) << "capped at three";
  // Keywords that also occur in prose count only when asked.
  EXPECT_EQ(CodeSyntax("return the import of const var", /*symbols_only=*/true), 0);
  EXPECT_EQ(CodeSyntax("return the import of const var", /*symbols_only=*/false), 3);
  EXPECT_EQ(CodeSyntax("let x be f()", /*symbols_only=*/false), 2);
}

TEST(LexiconTest, IsOneOfMatchesWholeWordsOnly) {
  static constexpr const char* kWords[] = {"write", "wr", "list"};
  EXPECT_TRUE(IsOneOf("write", kWords));
  EXPECT_TRUE(IsOneOf("wr", kWords));
  EXPECT_FALSE(IsOneOf("w", kWords)) << "a prefix of a word";
  EXPECT_FALSE(IsOneOf("writes", kWords)) << "a word plus more";
  EXPECT_FALSE(IsOneOf("", kWords));
  EXPECT_FALSE(IsOneOf("lists", kWords));
}

}  // namespace
}  // namespace loom::lexicon
