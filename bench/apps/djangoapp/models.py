from django.db import models


class Item(models.Model):
    name = models.CharField(max_length=100)
    price = models.DecimalField(max_digits=8, decimal_places=2)
    description = models.TextField()
    in_stock = models.BooleanField(default=True)

    class Meta:
        app_label = "djangoapp"
        ordering = ["id"]
