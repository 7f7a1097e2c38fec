/* placeholder: being written */
#include <tensorwire/tensorwire.h>
