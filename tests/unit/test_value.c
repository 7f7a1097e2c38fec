#include <criterion/criterion.h>
Test(placeholder, value) { cr_assert(1); }
