"""A small persona set shipped with the project (PersonaHub-style), written out in every supported language."""

# name, then per language: (who the persona is, the things they count)
PERSONAS: tuple[dict, ...] = (
    {"name": "Ada", "en": ("a baker", "loaves"), "de": ("Bäckerin", "Brote"), "fr": ("boulangère", "pains"),
     "es": ("panadera", "panes"), "it": ("fornaia", "pani"), "pt": ("padeira", "pães")},
    {"name": "Bruno", "en": ("a librarian", "books"), "de": ("Bibliothekar", "Bücher"), "fr": ("bibliothécaire", "livres"),
     "es": ("bibliotecario", "libros"), "it": ("bibliotecario", "libri"), "pt": ("bibliotecário", "livros")},
    {"name": "Chen", "en": ("a farmer", "apples"), "de": ("Bauer", "Äpfel"), "fr": ("fermier", "pommes"),
     "es": ("granjero", "manzanas"), "it": ("contadino", "mele"), "pt": ("agricultor", "maçãs")},
    {"name": "Dara", "en": ("a nurse", "bandages"), "de": ("Pflegerin", "Verbände"), "fr": ("infirmière", "pansements"),
     "es": ("enfermera", "vendas"), "it": ("infermiera", "bende"), "pt": ("enfermeira", "curativos")},
    {"name": "Elif", "en": ("a teacher", "pencils"), "de": ("Lehrerin", "Stifte"), "fr": ("enseignante", "crayons"),
     "es": ("maestra", "lápices"), "it": ("maestra", "matite"), "pt": ("professora", "lápis")},
    {"name": "Femi", "en": ("a shopkeeper", "coins"), "de": ("Händler", "Münzen"), "fr": ("commerçant", "pièces"),
     "es": ("tendero", "monedas"), "it": ("negoziante", "monete"), "pt": ("lojista", "moedas")},
    {"name": "Greta", "en": ("a gardener", "tulips"), "de": ("Gärtnerin", "Tulpen"), "fr": ("jardinière", "tulipes"),
     "es": ("jardinera", "tulipanes"), "it": ("giardiniera", "tulipani"), "pt": ("jardineira", "tulipas")},
    {"name": "Hugo", "en": ("a sailor", "ropes"), "de": ("Seemann", "Seile"), "fr": ("marin", "cordes"),
     "es": ("marinero", "cuerdas"), "it": ("marinaio", "corde"), "pt": ("marinheiro", "cordas")},
)
