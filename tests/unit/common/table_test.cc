#include "common/table.h"

#include "gtest/gtest.h"

namespace loom {
namespace {

TEST(TableTest, PadsColumnsToTheWidestCell) {
  EXPECT_EQ(FormatTextTable({"a", "bb"}, {{"xyz", "1"}}),
            "a    bb\n"
            "---  --\n"
            "xyz  1\n");
}

TEST(TableTest, CsvQuotesSpecialCells) {
  EXPECT_EQ(FormatCsv({"a", "b"}, {{"x,y", "say \"hi\""}}), "a,b\n\"x,y\",\"say \"\"hi\"\"\"\n");
}

}  // namespace
}  // namespace loom
