from django.shortcuts import render

from .models import Item


def items(request):
    rows = Item.objects.all()[:50]
    return render(request, "items.html", {"items": rows, "title": "Items"})
