"""Create the bench database (BENCH_DJANGO_DB) with 50 items, anew."""

import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djangoapp.settings")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402

from djangoapp.models import Item  # noqa: E402


def main():
    path = connection.settings_dict["NAME"]
    connection.close()
    if os.path.exists(path):
        os.unlink(path)
    with connection.schema_editor() as editor:
        editor.create_model(Item)
    Item.objects.bulk_create(
        Item(name="item %d" % i, price="%d.%02d" % (i, i % 100),
             description="The %d-th item of the bench, described in a sentence." % i,
             in_stock=i % 3 != 0)
        for i in range(50))
    print("created %s with %d items" % (path, Item.objects.count()))


if __name__ == "__main__":
    sys.exit(main())
