#include <criterion/criterion.h>
Test(placeholder, malformed) { cr_assert(1); }
