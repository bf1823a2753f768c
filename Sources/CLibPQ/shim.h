#ifndef CDCR_CLIBPQ_SHIM_H
#define CDCR_CLIBPQ_SHIM_H
#include <libpq-fe.h>
#endif
